package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
)

// Outbox is what delivery needs of the store.
type Outbox interface {
	// ClaimNotice claims the entry for one attempt (an entry that is done
	// comes back unclaimed); billing.ErrNotFound if there is none, a
	// CodeUnavailable error while another attempt holds it.
	ClaimNotice(ctx context.Context, uid, id string, now time.Time, hold time.Duration) (billing.OutboxEntry, error)
	// ReportNotice records what an attempt did and releases the claim.
	ReportNotice(ctx context.Context, uid, id string, r billing.DeliveryReport) error
}

// claimHold is how long one attempt holds a notice: longer than the SMTP
// and webhook timeouts together.
const claimHold = 2 * time.Minute

// Handler delivers notices: POST /api/tasks/notify {"uid","id"}.
type Handler struct {
	outbox  Outbox
	mailer  Mailer   // nil: no email (SMTP_URL unset)
	webhook *Webhook // nil: no operator webhook
	// Dashboard is the dashboard's URL, linked from every email.
	Dashboard string
	clock     billing.Clock
	log       *slog.Logger
}

// NewHandler returns the delivery handler. mailer and webhook may be nil:
// that channel is then not used. A nil log discards.
func NewHandler(outbox Outbox, mailer Mailer, webhook *Webhook, dashboard string, clock billing.Clock, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{outbox: outbox, mailer: mailer, webhook: webhook, Dashboard: dashboard, clock: clock, log: log}
}

// errRetry means the notice is not delivered yet: the task is retried.
var errRetry = &billing.Error{Code: billing.CodeUnavailable, Message: "the notice is not delivered yet"}

// Deliver sends notice t on each channel that has not delivered it, and
// records what it sent. It returns nil when the notice is done (or unknown:
// nothing to do), and an error wrapping errRetry when a channel failed or
// another attempt holds the notice; the task is then retried. After
// WebhookWindow a channel that still fails is given up and the notice
// marked failed.
func (h *Handler) Deliver(ctx context.Context, t billing.NoticeTask) error {
	now := h.clock.Now()
	e, err := h.outbox.ClaimNotice(ctx, t.UID, t.ID, now, claimHold)
	switch {
	case errors.Is(err, billing.ErrNotFound):
		h.log.Warn("notice task for no outbox entry; dropped", "uid", t.UID, "notice", t.ID)
		return nil
	case billing.ErrorCode(err) == billing.CodeUnavailable:
		return fmt.Errorf("notice %s: %w", t.ID, errRetry)
	case err != nil:
		return fmt.Errorf("notice %s: %w: %w", t.ID, errRetry, err)
	}
	if e.Status == billing.OutboxSent || e.Status == billing.OutboxFailed {
		return nil
	}
	r := billing.DeliveryReport{At: now}
	var failures []string
	emailDue := e.Email != "" && h.mailer != nil && e.EmailSentAt.IsZero()
	if emailDue {
		if err := h.sendEmail(ctx, e.Notice); err != nil {
			failures = append(failures, err.Error())
		} else {
			r.EmailSentAt, r.Ledger, emailDue = now, "Email sent: "+billing.NoticeSummary(e.Notice), false
		}
	}
	hookDue := h.webhook != nil && e.WebhookSentAt.IsZero()
	if hookDue {
		body, err := eventOf(e, e.Email)
		if err == nil {
			err = h.webhook.Post(ctx, body, now)
		}
		if err != nil {
			failures = append(failures, err.Error())
		} else {
			r.WebhookSentAt, hookDue = now, false
		}
	}
	r.Error = strings.Join(failures, "; ")
	switch {
	case !emailDue && !hookDue:
		r.Status = billing.OutboxSent
	case now.Sub(e.Created) > WebhookWindow:
		r.Status = billing.OutboxFailed
	}
	if err := h.outbox.ReportNotice(ctx, t.UID, t.ID, r); err != nil {
		return fmt.Errorf("notice %s: %w: %w", t.ID, errRetry, err)
	}
	log := h.log.With("uid", t.UID, "notice", t.ID, "type", e.Type, "attempt", e.Attempts)
	switch r.Status {
	case billing.OutboxSent:
		log.Info("notice delivered", "email", !r.EmailSentAt.IsZero(), "webhook", !r.WebhookSentAt.IsZero())
		return nil
	case billing.OutboxFailed:
		log.Error("notice given up after the retry window", "err", r.Error)
		return nil
	}
	log.Warn("notice not delivered; retried", "err", r.Error)
	return fmt.Errorf("notice %s: %s: %w", t.ID, r.Error, errRetry)
}

func (h *Handler) sendEmail(ctx context.Context, n billing.Notice) error {
	m, err := render(n, h.Dashboard)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := h.mailer.Send(ctx, m); err != nil {
		return fmt.Errorf("email: %w", err)
	}
	return nil
}

// ServeHTTP decodes {"uid","id"} strictly and delivers it. It answers 200
// {"ok":true} when done, 400 for a malformed body, 405 for a method other
// than POST and 503 when the task should be retried.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpjson.Fail(w, r, nil, billing.Errorf(billing.CodeMethodNotAllowed, "use POST"))
		return
	}
	var t billing.NoticeTask
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := httpjson.Decode(r, &t); err != nil {
		httpjson.Fail(w, r, nil, err)
		return
	}
	if t.UID == "" || t.ID == "" {
		httpjson.Fail(w, r, nil, billing.Errorf(billing.CodeBadRequest, `a notice task is {"uid","id"}`))
		return
	}
	if err := h.Deliver(r.Context(), t); err != nil {
		httpjson.Fail(w, r, nil, errRetry) // logged by Deliver
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]bool{"ok": true})
}

// Dispatcher schedules the delivery tasks of notices that a committed
// change made, in the background, so that a metered call never waits for
// Cloud Tasks. A task that could not be scheduled (or a process stopped
// first) is found by the daily sweep (Resend).
type Dispatcher struct {
	sched billing.NoticeScheduler
	log   *slog.Logger
	wg    sync.WaitGroup
}

// NewDispatcher returns a dispatcher onto sched. A nil log discards.
func NewDispatcher(sched billing.NoticeScheduler, log *slog.Logger) *Dispatcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dispatcher{sched: sched, log: log}
}

// Dispatch schedules tasks in the background; it returns at once.
func (d *Dispatcher) Dispatch(ctx context.Context, tasks []billing.NoticeTask) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, t := range tasks {
			if err := d.sched.ScheduleNotice(ctx, t); err != nil {
				d.log.Error("schedule notice; the sweep retries", "uid", t.UID, "notice", t.ID, "err", err)
			}
		}
	}()
}

// Wait waits for the dispatches under way, at shutdown and in tests.
func (d *Dispatcher) Wait() { d.wg.Wait() }

// PendingFinder lists notices still pending that were created before a
// time; *store.Store has it.
type PendingFinder interface {
	PendingNotices(ctx context.Context, before time.Time, limit int) ([]billing.NoticeTask, error)
}

// Resend schedules again the tasks of notices pending since before before
// (at most limit), whose task was lost or is still retrying (names
// de-duplicate). It returns how many it scheduled.
func Resend(ctx context.Context, pending PendingFinder, sched billing.NoticeScheduler, before time.Time, limit int) (int, error) {
	tasks, err := pending.PendingNotices(ctx, before, limit)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range tasks {
		if err := sched.ScheduleNotice(ctx, t); err != nil {
			return n, fmt.Errorf("resend notice %s of %s: %w", t.ID, t.UID, err)
		}
		n++
	}
	return n, nil
}
