// Package devtasks is the offline stand-in for Cloud Tasks: Queue, an
// in-process billing.Scheduler and billing.NoticeScheduler on the dev clock,
// with Cloud Tasks' naming, de-duplication and retries. Only the dev server and tests use it; the
// deployed functions schedule on tasks.CloudTasks and never compile it.
package devtasks

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
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/tasks"
)

// Deliver delivers one task; an error means "not done", and the task is
// retried.
type Deliver func(ctx context.Context, t billing.GrantTask) error

// Retry policy of Queue, Cloud Tasks' queue defaults: the first retry after
// 100ms, doubling up to an hour.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = time.Hour
)

// Tombstone is how long Queue keeps the name of a task that ran or was
// deleted, refusing a new task of that name, as Cloud Tasks does for about
// an hour for queues created through its API.
const Tombstone = time.Hour

// DeliverNotice delivers one notice task; an error means "not done", and
// the task is retried.
type DeliverNotice func(ctx context.Context, t billing.NoticeTask) error

// PendingTask is a task waiting in Queue: a grant (Task) or, when Notice is
// set, a notice's delivery.
type PendingTask struct {
	Name     string
	Task     billing.GrantTask
	Notice   *billing.NoticeTask
	Due      time.Time // Task.At, or the next retry after a failed delivery
	Attempts int       // failed deliveries so far
}

// Queue is an in-process billing.Scheduler with Cloud Tasks' semantics on a
// clock.Dev: tasks are named by TaskID, a second task of a pending or
// recently finished name is dropped (ScheduleGrant returns nil), and a task
// is delivered when the clock reaches its time, retried with backoff on the
// dev clock until it succeeds, never dropped.
//
// Time moves only when told: Advance moves the clock and delivers what
// falls due on the way. A task that is already due when scheduled (an
// overdue chain re-enqueued by reconcile) runs on the next Advance; Run
// calls Advance(ctx, 0) periodically for a dev server that wants them to
// run promptly. Queue is safe for concurrent use; deliveries run one at a
// time, without Queue's lock held, so a delivery may schedule tasks.
type Queue struct {
	clock         *clock.Dev
	deliver       Deliver
	deliverNotice DeliverNotice
	log           *slog.Logger

	advancing sync.Mutex // one Advance at a time

	mu      sync.Mutex
	pending map[string]*PendingTask
	done    map[string]time.Time // name -> when it ran or was deleted
}

var (
	_ billing.Scheduler       = (*Queue)(nil)
	_ billing.NoticeScheduler = (*Queue)(nil)
)

// DeliverNoticesWith sets how notice tasks are delivered; until it is set
// their deliveries fail and are retried.
func (q *Queue) DeliverNoticesWith(d DeliverNotice) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deliverNotice = d
}

// ScheduleNotice queues the delivery of notice t, due now, unless a task
// of its name (tasks.NoticeTaskID) is pending or finished within
// Tombstone; it returns nil either way.
func (q *Queue) ScheduleNotice(_ context.Context, t billing.NoticeTask) error {
	name := tasks.NoticeTaskID(t)
	now := q.clock.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.pending[name]; ok {
		return nil
	}
	if at, ok := q.done[name]; ok && now.Sub(at) < Tombstone {
		return nil
	}
	delete(q.done, name)
	q.pending[name] = &PendingTask{Name: name, Notice: &t, Due: now}
	return nil
}

// New returns a Queue that delivers tasks with deliver on clock's time. A
// nil log discards.
func New(clock *clock.Dev, deliver Deliver, log *slog.Logger) *Queue {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Queue{clock: clock, deliver: deliver, log: log,
		pending: map[string]*PendingTask{}, done: map[string]time.Time{}}
}

// ScheduleGrant queues t unless a task of its name is pending or finished
// within Tombstone; it returns nil either way.
func (q *Queue) ScheduleGrant(_ context.Context, t billing.GrantTask) error {
	name := tasks.TaskID(t.UID, t.Period)
	now := q.clock.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.pending[name]; ok {
		return nil
	}
	if at, ok := q.done[name]; ok && now.Sub(at) < Tombstone {
		return nil
	}
	delete(q.done, name)
	q.pending[name] = &PendingTask{Name: name, Task: t, Due: t.At}
	return nil
}

// Delete removes the pending task that would grant period to uid, as Cloud
// Tasks' DeleteTask does (its name stays reserved for Tombstone). It
// reports whether there was one. Tests use it to break a chain.
func (q *Queue) Delete(uid string, period int64) bool {
	name := tasks.TaskID(uid, period)
	now := q.clock.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.pending[name]; !ok {
		return false
	}
	delete(q.pending, name)
	q.done[name] = now
	return true
}

// Pending lists the pending tasks, the first due first.
func (q *Queue) Pending() []PendingTask {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]PendingTask, 0, len(q.pending))
	for _, p := range q.pending {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return before(&out[i], &out[j]) })
	return out
}

// Len is the number of pending tasks.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

func before(a, b *PendingTask) bool {
	if !a.Due.Equal(b.Due) {
		return a.Due.Before(b.Due)
	}
	return a.Name < b.Name
}

// next returns the first task due by until, or nil.
func (q *Queue) next(until time.Time) *PendingTask {
	q.mu.Lock()
	defer q.mu.Unlock()
	var first *PendingTask
	for _, p := range q.pending {
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
func (q *Queue) Advance(ctx context.Context, d time.Duration) (int, error) {
	q.advancing.Lock()
	defer q.advancing.Unlock()
	target := q.clock.Now().Add(max(d, 0))
	delivered := 0
	for {
		if err := ctx.Err(); err != nil {
			return delivered, err
		}
		p := q.next(target)
		if p == nil {
			break
		}
		q.clock.AdvanceTo(p.Due)
		err := q.deliverOne(ctx, p)
		now := q.clock.Now()
		q.mu.Lock()
		cur, ok := q.pending[p.Name]
		switch {
		case !ok:
			// deleted while it was being delivered
		case err == nil:
			delete(q.pending, p.Name)
			q.done[p.Name] = now
			delivered++
		default:
			cur.Attempts++
			cur.Due = now.Add(backoff(cur.Attempts))
			if p.Notice != nil {
				q.log.Warn("notice task failed; retrying", "task", p.Name, "uid", p.Notice.UID,
					"notice", p.Notice.ID, "attempts", cur.Attempts, "retryAt", cur.Due, "err", err)
			} else {
				q.log.Warn("grant task failed; retrying", "task", p.Name, "uid", p.Task.UID,
					"period", p.Task.Period, "attempts", cur.Attempts, "retryAt", cur.Due, "err", err)
			}
		}
		q.forget(now)
		q.mu.Unlock()
	}
	q.clock.AdvanceTo(target)
	return delivered, nil
}

var errNoNoticeDelivery = errors.New("no notice delivery set (DeliverNoticesWith)")

// deliverOne delivers p, a grant or a notice.
func (q *Queue) deliverOne(ctx context.Context, p *PendingTask) error {
	if p.Notice == nil {
		return q.deliver(ctx, p.Task)
	}
	q.mu.Lock()
	d := q.deliverNotice
	q.mu.Unlock()
	if d == nil {
		return errNoNoticeDelivery
	}
	return d(ctx, *p.Notice)
}

// forget drops tombstones older than Tombstone; q.mu is held.
func (q *Queue) forget(now time.Time) {
	for name, at := range q.done {
		if now.Sub(at) >= Tombstone {
			delete(q.done, name)
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
func (q *Queue) Run(ctx context.Context, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if _, err := q.Advance(ctx, 0); err != nil {
				return err
			}
		}
	}
}

// DeliverHTTP returns a Deliver that POSTs each task, as Cloud Tasks would,
// to h in-process: body {"uid","period"} and, if secret is not empty, the
// X-Paymeter-Task-Secret header. A status outside 2xx is an error.
func DeliverHTTP(h http.Handler, secret string) Deliver {
	return func(ctx context.Context, t billing.GrantTask) error {
		if err := postTask(ctx, h, "/api/tasks/grant", secret, t); err != nil {
			return fmt.Errorf("deliver grant %s period %d: %w", t.UID, t.Period, err)
		}
		return nil
	}
}

// DeliverNoticeHTTP returns a DeliverNotice that POSTs each notice task,
// as Cloud Tasks would, to h in-process, like DeliverHTTP.
func DeliverNoticeHTTP(h http.Handler, secret string) DeliverNotice {
	return func(ctx context.Context, t billing.NoticeTask) error {
		if err := postTask(ctx, h, "/api/tasks/notify", secret, t); err != nil {
			return fmt.Errorf("deliver notice %s of %s: %w", t.ID, t.UID, err)
		}
		return nil
	}
}

// postTask POSTs task as JSON to h at path, with the task secret if any; a
// status outside 2xx is an error.
func postTask(ctx context.Context, h http.Handler, path, secret string, task any) error {
	body, err := json.Marshal(task)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set(tasks.SecretHeader, secret)
	}
	w := &recorder{header: http.Header{}}
	h.ServeHTTP(w, req)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status < 200 || w.status > 299 {
		return fmt.Errorf("status %d: %s", w.status, w.body.String())
	}
	return nil
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
