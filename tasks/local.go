package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/paymeter/paymeter/billing"
)

// DevClock is the dev server's and the tests' clock: real time plus an
// offset that only moves forward. It is safe for concurrent use.
type DevClock struct {
	mu     sync.Mutex
	offset time.Duration
	now    func() time.Time
}

var _ billing.Clock = (*DevClock)(nil)

// NewDevClock returns a clock that reads real time until it is moved.
func NewDevClock() *DevClock { return &DevClock{now: time.Now} }

// NewDevClockAt returns a clock that reads start now and then runs at the
// speed of real time, for tests that want a fixed origin.
func NewDevClockAt(start time.Time) *DevClock {
	c := NewDevClock()
	c.offset = start.Sub(c.now())
	return c
}

// Now returns real time plus the offset.
func (c *DevClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now().Add(c.offset)
}

// Advance moves the clock forward by d; a negative d does nothing.
func (c *DevClock) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// AdvanceTo moves the clock forward to t; a time not after Now does nothing.
func (c *DevClock) AdvanceTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := t.Sub(c.now().Add(c.offset)); d > 0 {
		c.offset += d
	}
}

// Deliver delivers one task; an error means "not done", and the task is
// retried.
type Deliver func(ctx context.Context, t billing.GrantTask) error

// Retry policy of Local, Cloud Tasks' queue defaults: the first retry after
// 100ms, doubling up to an hour.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = time.Hour
)

// Tombstone is how long Local keeps the name of a task that ran or was
// deleted, refusing a new task of that name, as Cloud Tasks does for about
// an hour for queues created through its API.
const Tombstone = time.Hour

// DeliverNotice delivers one notice task; an error means "not done", and
// the task is retried.
type DeliverNotice func(ctx context.Context, t billing.NoticeTask) error

// PendingTask is a task waiting in Local: a grant (Task) or, when Notice is
// set, a notice's delivery.
type PendingTask struct {
	Name     string
	Task     billing.GrantTask
	Notice   *billing.NoticeTask
	Due      time.Time // Task.At, or the next retry after a failed delivery
	Attempts int       // failed deliveries so far
}

// Local is an in-process billing.Scheduler with Cloud Tasks' semantics on a
// DevClock: tasks are named by TaskID, a second task of a pending or
// recently finished name is dropped (ScheduleGrant returns nil), and a task
// is delivered when the clock reaches its time, retried with backoff on the
// dev clock until it succeeds, never dropped.
//
// Time moves only when told: Advance moves the clock and delivers what
// falls due on the way. A task that is already due when scheduled (an
// overdue chain re-enqueued by reconcile) runs on the next Advance; Run
// calls Advance(ctx, 0) periodically for a dev server that wants them to
// run promptly. Local is safe for concurrent use; deliveries run one at a
// time, without Local's lock held, so a delivery may schedule tasks.
type Local struct {
	clock         *DevClock
	deliver       Deliver
	deliverNotice DeliverNotice
	log           *slog.Logger

	advancing sync.Mutex // one Advance at a time

	mu      sync.Mutex
	pending map[string]*PendingTask
	done    map[string]time.Time // name -> when it ran or was deleted
}

var (
	_ billing.Scheduler       = (*Local)(nil)
	_ billing.NoticeScheduler = (*Local)(nil)
)

// NewLocal returns a Local scheduler that delivers tasks with deliver on
// clock's time. A nil log discards.
func NewLocal(clock *DevClock, deliver Deliver, log *slog.Logger) *Local {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Local{clock: clock, deliver: deliver, log: log,
		pending: map[string]*PendingTask{}, done: map[string]time.Time{}}
}

// ScheduleGrant queues t unless a task of its name is pending or finished
// within Tombstone; it returns nil either way.
func (l *Local) ScheduleGrant(_ context.Context, t billing.GrantTask) error {
	name := TaskID(t.UID, t.Period)
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.pending[name]; ok {
		return nil
	}
	if at, ok := l.done[name]; ok && now.Sub(at) < Tombstone {
		return nil
	}
	delete(l.done, name)
	l.pending[name] = &PendingTask{Name: name, Task: t, Due: t.At}
	return nil
}

// DeliverNoticesWith sets how notice tasks are delivered; until it is set
// they wait. Call it before Advance runs.
func (l *Local) DeliverNoticesWith(d DeliverNotice) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deliverNotice = d
}

// ScheduleNotice queues the delivery of notice t, due now, unless a task
// of its name is pending or finished within Tombstone; it returns nil
// either way.
func (l *Local) ScheduleNotice(_ context.Context, t billing.NoticeTask) error {
	name := NoticeTaskID(t)
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.pending[name]; ok {
		return nil
	}
	if at, ok := l.done[name]; ok && now.Sub(at) < Tombstone {
		return nil
	}
	delete(l.done, name)
	l.pending[name] = &PendingTask{Name: name, Notice: &t, Due: now}
	return nil
}

// Delete removes the pending task that would grant period to uid, as Cloud
// Tasks' DeleteTask does (its name stays reserved for Tombstone). It
// reports whether there was one. Tests use it to break a chain.
func (l *Local) Delete(uid string, period int64) bool {
	name := TaskID(uid, period)
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.pending[name]; !ok {
		return false
	}
	delete(l.pending, name)
	l.done[name] = now
	return true
}

// Pending lists the pending tasks, the first due first.
func (l *Local) Pending() []PendingTask {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]PendingTask, 0, len(l.pending))
	for _, p := range l.pending {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return before(&out[i], &out[j]) })
	return out
}

// Len is the number of pending tasks.
func (l *Local) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}

func before(a, b *PendingTask) bool {
	if !a.Due.Equal(b.Due) {
		return a.Due.Before(b.Due)
	}
	return a.Name < b.Name
}

// next returns the first task due by until, or nil.
func (l *Local) next(until time.Time) *PendingTask {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first *PendingTask
	for _, p := range l.pending {
		if !p.Due.After(until) && (first == nil || before(p, first)) {
			first = p
		}
	}
	if first == nil {
		return nil
	}
	c := *first
	return &c
}

// Advance moves the clock forward by d. On the way, for each task that falls
// due, in time order, it sets the clock to the task's time and delivers it;
// a failed delivery is retried after a backoff on the dev clock (100ms
// doubling to an hour, as Cloud Tasks does), within the same Advance if the
// retry falls due by its end. Advance(ctx, 0) delivers what is due now. It
// returns the number of successful deliveries, and ctx's error if ctx ends
// first.
func (l *Local) Advance(ctx context.Context, d time.Duration) (int, error) {
	l.advancing.Lock()
	defer l.advancing.Unlock()
	target := l.clock.Now().Add(max(d, 0))
	delivered := 0
	for {
		if err := ctx.Err(); err != nil {
			return delivered, err
		}
		p := l.next(target)
		if p == nil {
			break
		}
		l.clock.AdvanceTo(p.Due)
		var err error
		if p.Notice != nil {
			l.mu.Lock()
			d := l.deliverNotice
			l.mu.Unlock()
			err = errNoNoticeDelivery
			if d != nil {
				err = d(ctx, *p.Notice)
			}
		} else {
			err = l.deliver(ctx, p.Task)
		}
		now := l.clock.Now()
		l.mu.Lock()
		cur, ok := l.pending[p.Name]
		switch {
		case !ok:
			// deleted while it was being delivered
		case err == nil:
			delete(l.pending, p.Name)
			l.done[p.Name] = now
			delivered++
		default:
			cur.Attempts++
			cur.Due = now.Add(backoff(cur.Attempts))
			if p.Notice != nil {
				l.log.Warn("notice task failed; retrying", "task", p.Name, "uid", p.Notice.UID,
					"notice", p.Notice.ID, "attempts", cur.Attempts, "retryAt", cur.Due, "err", err)
			} else {
				l.log.Warn("grant task failed; retrying", "task", p.Name, "uid", p.Task.UID,
					"period", p.Task.Period, "attempts", cur.Attempts, "retryAt", cur.Due, "err", err)
			}
		}
		l.forget(now)
		l.mu.Unlock()
	}
	l.clock.AdvanceTo(target)
	return delivered, nil
}

// forget drops tombstones older than Tombstone; l.mu is held.
func (l *Local) forget(now time.Time) {
	for name, at := range l.done {
		if now.Sub(at) >= Tombstone {
			delete(l.done, name)
		}
	}
}

func backoff(attempts int) time.Duration {
	b := minBackoff
	for i := 1; i < attempts && b < maxBackoff; i++ {
		b *= 2
	}
	return min(b, maxBackoff)
}

// Run calls Advance(ctx, 0) every interval until ctx ends, so that tasks
// that fall due in real time, or were due when scheduled, run without a
// clock move. It returns ctx's error.
func (l *Local) Run(ctx context.Context, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if _, err := l.Advance(ctx, 0); err != nil {
				return err
			}
		}
	}
}

var errNoNoticeDelivery = errors.New("no notice delivery set (DeliverNoticesWith)")

// DeliverNoticeHTTP returns a DeliverNotice that POSTs each notice task, as
// Cloud Tasks would, to h in-process, like DeliverHTTP.
func DeliverNoticeHTTP(h http.Handler, secret string) DeliverNotice {
	return func(ctx context.Context, t billing.NoticeTask) error {
		body, err := json.Marshal(t)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/api/tasks/notify", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if secret != "" {
			req.Header.Set(SecretHeader, secret)
		}
		w := &recorder{header: http.Header{}}
		h.ServeHTTP(w, req)
		if w.status == 0 {
			w.status = http.StatusOK
		}
		if w.status < 200 || w.status > 299 {
			return fmt.Errorf("deliver notice %s of %s: status %d: %s", t.ID, t.UID, w.status, w.body.String())
		}
		return nil
	}
}

// DeliverHTTP returns a Deliver that POSTs each task, as Cloud Tasks would,
// to h in-process: body {"uid","period"} and, if secret is not empty, the
// X-Paymeter-Task-Secret header. A status outside 2xx is an error.
func DeliverHTTP(h http.Handler, secret string) Deliver {
	return func(ctx context.Context, t billing.GrantTask) error {
		body, err := json.Marshal(t)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/api/tasks/grant", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if secret != "" {
			req.Header.Set(SecretHeader, secret)
		}
		w := &recorder{header: http.Header{}}
		h.ServeHTTP(w, req)
		if w.status == 0 {
			w.status = http.StatusOK
		}
		if w.status < 200 || w.status > 299 {
			return fmt.Errorf("deliver grant %s period %d: status %d: %s", t.UID, t.Period, w.status, w.body.String())
		}
		return nil
	}
}

// recorder is the http.ResponseWriter of an in-process delivery.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
