package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
)

// AccountUpdater changes one account in a transaction; billing.Accounts
// has it.
type AccountUpdater interface {
	UpdateAccount(ctx context.Context, uid string, fn func(*billing.Account) error) (*billing.Account, error)
}

// OverdueFinder lists the Free accounts whose next grant is due before a
// time, as the tasks that would grant it: ordered by due time then uid, at
// most pageSize at a time, after the cursor after ("" for the first page).
// next is the cursor of the following page, "" after the last.
type OverdueFinder interface {
	Overdue(ctx context.Context, before time.Time, pageSize int, after string) (tasks []billing.GrantTask, next string, err error)
}

// maxTaskBody bounds the body of a task request.
const maxTaskBody = 4 << 10

// GrantHandler serves POST /api/tasks/grant: it applies the Free grant a task
// asks for and schedules the account's next one.
type GrantHandler struct {
	accounts  AccountUpdater
	scheduler billing.Scheduler
	clock     billing.Clock
	free      billing.Plan
	log       *slog.Logger
}

// NewGrantHandler returns the grant handler. free is the Free plan of the
// catalog; a nil log discards.
func NewGrantHandler(accounts AccountUpdater, scheduler billing.Scheduler, clock billing.Clock, free billing.Plan, log *slog.Logger) *GrantHandler {
	return &GrantHandler{accounts: accounts, scheduler: scheduler, clock: clock, free: free, log: orDiscard(log)}
}

// errNotDue is a task that arrived before its period began: it is retried.
var errNotDue = &billing.Error{Code: billing.CodeUnavailable, Message: "the grant is not due yet"}

// Grant applies the grant of t.Period to t.UID, at most once per period, then
// schedules the account's next grant, whether or not this call granted
// anything (names de-duplicate, and this restores a chain whose earlier
// scheduling failed). An unknown uid is not an error: nothing is done.
// It returns an error wrapping errNotDue for a task that arrived before its
// period, and any error of the store or the scheduler; each means "retry".
func (h *GrantHandler) Grant(ctx context.Context, t billing.GrantTask) error {
	now := h.clock.Now()
	var granted bool
	a, err := h.accounts.UpdateAccount(ctx, t.UID, func(a *billing.Account) error {
		granted = a.GrantFree(t.Period, h.free, now)
		return nil
	})
	if errors.Is(err, billing.ErrNotFound) {
		h.log.Warn("grant task for an unknown account; dropped", "uid", t.UID, "period", t.Period)
		return nil
	}
	if err != nil {
		return fmt.Errorf("grant %s period %d: %w", t.UID, t.Period, err)
	}
	next, ok := a.NextGrant()
	if ok {
		if err := h.scheduler.ScheduleGrant(ctx, next); err != nil {
			return fmt.Errorf("grant %s period %d: %w", t.UID, t.Period, err)
		}
	}
	switch {
	case granted:
		h.log.Info("free grant applied", "uid", t.UID, "period", t.Period, "nextPeriod", next.Period, "nextAt", next.At)
	case ok && t.Period >= next.Period:
		// The chain still waits for this period: the task came early.
		return fmt.Errorf("grant %s period %d at %s: %w", t.UID, t.Period, now.Format(time.RFC3339), errNotDue)
	default:
		h.log.Info("free grant task changed nothing", "uid", t.UID, "period", t.Period, "chainLive", ok)
	}
	return nil
}

// ServeHTTP decodes {"uid","period"} strictly and applies it with Grant. It
// answers 200 {"ok":true} when done (or nothing was to be done), 400
// bad_request for a malformed body, 405 for a method other than POST, and
// 5xx when Cloud Tasks should retry.
func (h *GrantHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowPost(w, r) {
		return
	}
	var t billing.GrantTask
	r.Body = http.MaxBytesReader(w, r.Body, maxTaskBody)
	if err := httpjson.Decode(r, &t); err != nil {
		httpjson.Fail(w, r, h.log, err)
		return
	}
	if t.UID == "" || t.Period < 0 {
		httpjson.Fail(w, r, h.log, billing.Errorf(billing.CodeBadRequest, `a grant task needs a "uid" and a "period" of 0 or more`))
		return
	}
	if err := h.Grant(r.Context(), t); err != nil {
		if errors.Is(err, errNotDue) {
			h.log.Info("grant task arrived early; retry", "uid", t.UID, "period", t.Period)
			httpjson.Fail(w, r, nil, errNotDue)
			return
		}
		h.log.Error("grant task failed; Cloud Tasks retries it", "uid", t.UID, "period", t.Period, "err", err)
		httpjson.Fail(w, r, nil, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]bool{"ok": true})
}

// ReconcileHandler serves POST /api/tasks/reconcile, the daily sweep: it
// re-schedules the next grant of every Free account whose grant is overdue,
// healing chains that an outage broke.
type ReconcileHandler struct {
	overdue   OverdueFinder
	scheduler billing.Scheduler
	clock     billing.Clock
	log       *slog.Logger
	// Grace is how overdue a grant must be to count: a chain that is merely
	// late by less is left to Cloud Tasks' own retries. Default an hour, the
	// time Cloud Tasks keeps a finished task's name reserved.
	Grace time.Duration
	// PageSize is how many accounts are read at a time; default 200.
	PageSize int
}

// NewReconcileHandler returns the sweep. A nil log discards.
func NewReconcileHandler(overdue OverdueFinder, scheduler billing.Scheduler, clock billing.Clock, log *slog.Logger) *ReconcileHandler {
	return &ReconcileHandler{overdue: overdue, scheduler: scheduler, clock: clock, log: orDiscard(log),
		Grace: time.Hour, PageSize: 200}
}

// Reconcile pages through every overdue account and schedules its next
// grant. Scheduling failures do not stop the sweep; it returns how many
// tasks it scheduled (or found already scheduled) and an error if reading a
// page failed or any task could not be scheduled.
func (h *ReconcileHandler) Reconcile(ctx context.Context) (int, error) {
	before := h.clock.Now().Add(-h.Grace)
	pageSize := h.PageSize
	if pageSize <= 0 {
		pageSize = 200
	}
	scheduled, failed := 0, 0
	var firstErr error
	after := ""
	for {
		page, next, err := h.overdue.Overdue(ctx, before, pageSize, after)
		if err != nil {
			return scheduled, fmt.Errorf("reconcile: overdue after %q: %w", after, err)
		}
		for _, t := range page {
			if err := h.scheduler.ScheduleGrant(ctx, t); err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
				}
				h.log.Error("reconcile: schedule failed", "uid", t.UID, "period", t.Period, "err", err)
				continue
			}
			scheduled++
			h.log.Info("reconcile: overdue chain re-enqueued", "uid", t.UID, "period", t.Period, "dueAt", t.At)
		}
		if next == "" {
			break
		}
		if next == after {
			return scheduled, fmt.Errorf("reconcile: the store returned cursor %q twice", next)
		}
		after = next
	}
	if failed > 0 {
		return scheduled, fmt.Errorf("reconcile: %d of %d tasks not scheduled: %w", failed, failed+scheduled, firstErr)
	}
	return scheduled, nil
}

// ServeHTTP runs Reconcile, ignoring the body (Cloud Scheduler's). It
// answers 200 {"scheduled":n}, 405 for a method other than POST, and 500
// when the sweep was incomplete, so that the job shows as failed.
func (h *ReconcileHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowPost(w, r) {
		return
	}
	n, err := h.Reconcile(r.Context())
	if err != nil {
		h.log.Error("reconcile incomplete", "scheduled", n, "err", err)
		httpjson.Fail(w, r, nil, err)
		return
	}
	h.log.Info("reconcile done", "scheduled", n)
	httpjson.Write(w, http.StatusOK, map[string]int{"scheduled": n})
}

func allowPost(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", http.MethodPost)
	httpjson.Fail(w, r, nil, billing.Errorf(billing.CodeMethodNotAllowed, "use POST"))
	return false
}
