// Package taskstest runs the Free-tier chain scenarios of package tasks
// against any account store, so that the in-memory fake of tasks' tests and
// the Firestore store are held to the same behaviour: 60 weeks give 60
// grants and one live chain, duplicated and failed deliveries change
// nothing, a paid plan stops the chain and Free restarts it once, and
// reconcile heals a broken chain.
package taskstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/devtasks"
	"github.com/paymeter/paymeter/tasks"
)

// Store is what the scenarios need of a store: accounts, their ledger and
// the overdue query of the daily sweep.
type Store interface {
	billing.Accounts
	billing.History
	tasks.OverdueFinder
}

// Start is the dev clock's start in every scenario: a Monday at noon UTC.
var Start = time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)

const secret = "taskstest-secret"

// RunChain runs every chain scenario as a subtest, each on a fresh store
// from newStore and its own dev clock and devtasks.Queue.
func RunChain(t *testing.T, newStore func(t *testing.T) Store) {
	t.Run("SixtyWeeks", func(t *testing.T) {
		sixtyWeeks(t, newEnv(t, newStore(t), nil))
	})
	t.Run("SixtyWeeksDeliveredTwice", func(t *testing.T) {
		twice := func(d devtasks.Deliver) devtasks.Deliver {
			return func(ctx context.Context, task billing.GrantTask) error {
				return errors.Join(d(ctx, task), d(ctx, task))
			}
		}
		sixtyWeeks(t, newEnv(t, newStore(t), twice))
	})
	t.Run("SixtyWeeksWithFailures", func(t *testing.T) {
		// Every third delivery is lost before the handler sees it, every
		// fifth is applied but its answer is lost; every fourth store update
		// and every seventh schedule call fails, so the handler answers 5xx.
		var n atomic.Int64
		flaky := func(d devtasks.Deliver) devtasks.Deliver {
			return func(ctx context.Context, task billing.GrantTask) error {
				switch i := n.Add(1); {
				case i%3 == 0:
					return errors.New("connection reset")
				case i%5 == 0:
					_ = d(ctx, task)
					return errors.New("answer lost")
				default:
					return d(ctx, task)
				}
			}
		}
		e := newEnv(t, &flakyStore{Store: newStore(t), every: 4}, flaky)
		e.flakySchedule(7)
		sixtyWeeks(t, e)
	})
	t.Run("ConcurrentDuplicates", func(t *testing.T) {
		concurrentDuplicates(t, newEnv(t, newStore(t), nil))
	})
	t.Run("PaidPlanStopsChainFreeRestartsOnce", func(t *testing.T) {
		paidStopsChain(t, newEnv(t, newStore(t), nil))
	})
	t.Run("ReconcileHealsBrokenChain", func(t *testing.T) {
		reconcileHeals(t, newEnv(t, newStore(t), nil))
	})
	t.Run("ReconcilePagesThroughAll", func(t *testing.T) {
		reconcilePages(t, newEnv(t, newStore(t), nil))
	})
}

// env is one scenario's world: a store, a dev clock, a devtasks.Queue
// delivering to the grant handler behind RequireSecret, and the sweep.
type env struct {
	t         *testing.T
	ctx       context.Context
	store     Store
	clock     *clock.Dev
	local     *devtasks.Queue
	sched     *switchScheduler
	grant     *tasks.GrantHandler
	reconcile *tasks.ReconcileHandler
	free      billing.Plan
	prefix    string
}

func newEnv(t *testing.T, store Store, wrap func(devtasks.Deliver) devtasks.Deliver) *env {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	clock := clock.NewDevAt(Start)
	free := billing.DefaultCatalog().Free()
	e := &env{t: t, ctx: t.Context(), store: store, clock: clock, free: free, prefix: uniquePrefix()}
	e.sched = &switchScheduler{}
	e.grant = tasks.NewGrantHandler(store, e.sched, clock, free, log)
	deliver := devtasks.DeliverHTTP(tasks.RequireSecret(secret)(e.grant), secret)
	if wrap != nil {
		deliver = wrap(deliver)
	}
	e.local = devtasks.New(clock, deliver, log)
	e.sched.next = e.local
	e.reconcile = tasks.NewReconcileHandler(store, e.local, clock, log)
	return e
}

// flakySchedule makes every nth schedule call of the grant handler fail.
func (e *env) flakySchedule(n int64) { e.sched.failEvery = n }

// switchScheduler forwards to next, failing every failEvery-th call.
type switchScheduler struct {
	next      billing.Scheduler
	failEvery int64
	calls     atomic.Int64
}

func (s *switchScheduler) ScheduleGrant(ctx context.Context, t billing.GrantTask) error {
	if i := s.calls.Add(1); s.failEvery > 0 && i%s.failEvery == 0 {
		return errors.New("cloud tasks unavailable")
	}
	return s.next.ScheduleGrant(ctx, t)
}

// flakyStore fails every nth UpdateAccount before changing anything.
type flakyStore struct {
	Store
	every int64
	calls atomic.Int64
}

func (s *flakyStore) UpdateAccount(ctx context.Context, uid string, fn func(*billing.Account) error) (*billing.Account, error) {
	if i := s.calls.Add(1); i%s.every == 0 {
		return nil, errors.New("transaction aborted")
	}
	return s.Store.UpdateAccount(ctx, uid, fn)
}

func uniquePrefix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "tt" + hex.EncodeToString(b)
}

// signUp provisions an account now and schedules its chain, as the first
// authenticated call does.
func (e *env) signUp(name string) string {
	e.t.Helper()
	uid := e.prefix + "-" + name
	a, created, err := e.store.Provision(e.ctx, billing.Identity{UID: uid, Email: uid + "@example.com", EmailVerified: true}, e.clock.Now())
	if err != nil || !created {
		e.t.Fatalf("provision %s: created=%v err=%v", uid, created, err)
	}
	next, ok := a.NextGrant()
	if !ok {
		e.t.Fatalf("a new account has no next grant")
	}
	if err := e.local.ScheduleGrant(e.ctx, next); err != nil {
		e.t.Fatalf("schedule: %v", err)
	}
	return uid
}

func (e *env) advance(d time.Duration) {
	e.t.Helper()
	if _, err := e.local.Advance(e.ctx, d); err != nil {
		e.t.Fatalf("advance %s: %v", d, err)
	}
}

func (e *env) account(uid string) *billing.Account {
	e.t.Helper()
	a, err := e.store.Account(e.ctx, uid)
	if err != nil {
		e.t.Fatalf("account %s: %v", uid, err)
	}
	return a
}

// freeGrants counts the Free grants in uid's ledger.
func (e *env) freeGrants(uid string) int {
	e.t.Helper()
	entries, err := e.store.Ledger(e.ctx, uid, 10000)
	if err != nil {
		e.t.Fatalf("ledger %s: %v", uid, err)
	}
	ids := map[string]bool{}
	for _, en := range entries {
		if en.Kind == billing.EntryGrant && en.Source == billing.SourceFree {
			if ids[en.ID] {
				e.t.Fatalf("ledger of %s has entry %s twice", uid, en.ID)
			}
			ids[en.ID] = true
		}
	}
	return len(ids)
}

// pendingFor lists the pending tasks of uid.
func (e *env) pendingFor(uid string) []devtasks.PendingTask {
	var out []devtasks.PendingTask
	for _, p := range e.local.Pending() {
		if p.Task.UID == uid {
			out = append(out, p)
		}
	}
	return out
}

// wantChain checks uid has had grants Free grants, holds the Free
// allowance of the current week only, and has exactly one pending task.
func (e *env) wantChain(uid string, grants int) {
	e.t.Helper()
	if got := e.freeGrants(uid); got != grants {
		e.t.Fatalf("%s at %s: %d Free grants, want %d", uid, e.clock.Now().Format(time.DateTime), got, grants)
	}
	a := e.account(uid)
	if got := a.Balance(e.clock.Now()); got != e.free.Credits {
		e.t.Fatalf("%s: balance %d, want %d (one live Free grant)", uid, got, e.free.Credits)
	}
	p := e.pendingFor(uid)
	if len(p) != 1 {
		e.t.Fatalf("%s: %d pending tasks, want one live chain: %+v", uid, len(p), p)
	}
	if next, _ := a.NextGrant(); p[0].Task.Period != next.Period || !p[0].Task.At.Equal(a.NextGrantAt) {
		e.t.Fatalf("%s: pending task %+v, want period %d at %s", uid, p[0].Task, next.Period, a.NextGrantAt)
	}
}

func sixtyWeeks(t *testing.T, e *env) {
	uid := e.signUp("sixty")
	e.advance(time.Hour) // check each week an hour in, after any retries
	e.wantChain(uid, 1)
	for week := 2; week <= 60; week++ {
		e.advance(billing.Week)
		e.wantChain(uid, week)
	}
	if n := e.freeGrants(uid); n != 60 {
		t.Fatalf("after 60 weeks: %d Free grants, want 60", n)
	}
}

func concurrentDuplicates(t *testing.T, e *env) {
	uid := e.signUp("dup")
	e.clock.Advance(billing.Week) // due, not yet delivered
	task := e.pendingFor(uid)[0].Task
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			errs <- e.grant.Grant(e.ctx, task)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("grant: %v", err)
		}
	}
	// The scheduled task itself arrives too, late: it changes nothing.
	e.advance(0)
	e.wantChain(uid, 2)
	// A task far too late for its period, and one from long ago.
	e.advance(3 * billing.Week)
	for _, old := range []billing.GrantTask{task, {UID: uid, Period: 0}} {
		if err := e.grant.Grant(e.ctx, old); err != nil {
			t.Fatalf("late grant: %v", err)
		}
	}
	e.wantChain(uid, 5)
}

func (e *env) setPlan(uid, plan string) {
	e.t.Helper()
	a, err := e.store.UpdateAccount(e.ctx, uid, func(a *billing.Account) error {
		a.SetPlan(plan, e.clock.Now())
		return nil
	})
	if err != nil {
		e.t.Fatalf("set plan %s: %v", plan, err)
	}
	// What the webhook and cancel handlers do after a plan change.
	if next, ok := a.NextGrant(); ok {
		if err := e.local.ScheduleGrant(e.ctx, next); err != nil {
			e.t.Fatalf("schedule: %v", err)
		}
	}
}

func paidStopsChain(t *testing.T, e *env) {
	uid := e.signUp("paid")
	e.advance(time.Hour)
	e.advance(2 * billing.Week)
	e.wantChain(uid, 3)

	e.advance(2 * 24 * time.Hour)
	e.setPlan(uid, billing.PlanBasic)
	e.advance(6 * billing.Week)
	if got := e.freeGrants(uid); got != 3 {
		t.Fatalf("on Basic: %d Free grants, want still 3", got)
	}
	if p := e.pendingFor(uid); len(p) != 0 {
		t.Fatalf("on Basic: %d pending tasks, want the chain stopped", len(p))
	}

	// Cancelling, even three times (the original granted each time),
	// restarts one chain and grants nothing at once.
	for range 3 {
		e.setPlan(uid, billing.PlanFree)
	}
	if got := e.freeGrants(uid); got != 3 {
		t.Fatalf("back on Free: %d Free grants, want 3 until the next week", got)
	}
	if p := e.pendingFor(uid); len(p) != 1 {
		t.Fatalf("back on Free: %d pending tasks, want 1", len(p))
	}
	e.advance(billing.Week)
	e.wantChain(uid, 4)
	e.advance(4 * billing.Week)
	e.wantChain(uid, 8)
}

func reconcileHeals(t *testing.T, e *env) {
	uid := e.signUp("heal")
	healthy := e.signUp("healthy")
	e.advance(time.Hour)
	e.advance(billing.Week)
	e.wantChain(uid, 2)

	// Lose the next task, as an exhausted retry or a purged queue would.
	next := e.pendingFor(uid)[0].Task
	if !e.local.Delete(uid, next.Period) {
		t.Fatalf("no task to delete")
	}
	// Within the grace hour the sweep leaves it alone.
	e.advance(billing.Week - 30*time.Minute)
	if got := e.sweep(); got != 0 {
		t.Fatalf("sweep 30 minutes after: %d scheduled, want 0", got)
	}
	e.advance(2 * billing.Week)
	if got := e.freeGrants(uid); got != 2 {
		t.Fatalf("broken chain: %d Free grants, want 2", got)
	}
	if got := e.sweep(); got != 1 {
		t.Fatalf("sweep: %d scheduled, want 1 (the healthy chain is not overdue)", got)
	}
	e.advance(0) // the re-enqueued task is overdue: it runs at once
	// A late task grants the current week; missed weeks do not pile up.
	e.wantChain(uid, 3)
	e.advance(billing.Week)
	e.wantChain(uid, 4)
	e.wantChain(healthy, 6)
	if got := e.sweep(); got != 0 {
		t.Fatalf("sweep after healing: %d scheduled, want 0", got)
	}
}

// sweep calls the reconcile endpoint as Cloud Scheduler does.
func (e *env) sweep() int {
	e.t.Helper()
	w := httptest.NewRecorder()
	e.reconcile.ServeHTTP(w, httptest.NewRequestWithContext(e.ctx, http.MethodPost, "/api/tasks/reconcile", nil))
	if w.Code != http.StatusOK {
		e.t.Fatalf("reconcile: %d %s", w.Code, w.Body)
	}
	var n int
	if _, err := fmt.Sscanf(w.Body.String(), `{"scheduled":%d}`, &n); err != nil {
		e.t.Fatalf("reconcile body %q: %v", w.Body, err)
	}
	return n
}

func reconcilePages(t *testing.T, e *env) {
	const accounts = 23
	e.reconcile.PageSize = 5
	uids := make([]string, accounts)
	for i := range uids {
		uids[i] = e.signUp(fmt.Sprintf("page%02d", i))
		e.clock.Advance(time.Minute)
	}
	for _, uid := range uids {
		for _, p := range e.pendingFor(uid) {
			e.local.Delete(uid, p.Task.Period)
		}
	}
	e.advance(billing.Week + 2*time.Hour)
	if got := e.sweep(); got != accounts {
		t.Fatalf("sweep: %d scheduled, want %d", got, accounts)
	}
	e.advance(0)
	for _, uid := range uids {
		e.wantChain(uid, 2)
	}
}
