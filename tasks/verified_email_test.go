package tasks_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/tasks"
)

// A grant task for an account whose Free credits wait for a verified email
// (a stale task, or one forged by someone holding the task secret) grants
// nothing and is not retried; once the email is verified the chain runs.
func TestGrantTaskGivesNothingToAnUnverifiedAccount(t *testing.T) {
	free := billing.DefaultCatalog().Free()
	start := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s := mock.NewStore()
	s.RequireVerifiedEmail(true)
	if _, _, err := s.Provision(t.Context(), billing.Identity{UID: "u", Email: "u@example.com"}, start); err != nil {
		t.Fatal(err)
	}
	clock := clock.NewFixed(start)
	sched := &mock.Scheduler{}
	h := tasks.NewGrantHandler(s, sched, clock, free, nil)
	for _, period := range []int64{0, 1, 2} {
		clock.Set(start.Add(time.Duration(period) * billing.Week))
		if w := post(h, http.MethodPost, fmt.Sprintf(`{"uid":"u","period":%d}`, period)); w.Code != http.StatusOK {
			t.Fatalf("period %d: status %d, want 200 (done, no retry): %s", period, w.Code, w.Body)
		}
	}
	a, _ := s.Account(t.Context(), "u")
	if a.Balance(clock.Now()) != 0 || len(sched.Tasks()) != 0 {
		t.Fatalf("unverified account: %d credits, scheduled %+v; want none", a.Balance(clock.Now()), sched.Tasks())
	}

	verifiedAt := clock.Now()
	if _, err := s.UpdateAccount(t.Context(), "u", func(a *billing.Account) error { a.StartFree(free, verifiedAt); return nil }); err != nil {
		t.Fatal(err)
	}
	clock.Set(verifiedAt.Add(billing.Week))
	if w := post(h, http.MethodPost, `{"uid":"u","period":1}`); w.Code != http.StatusOK {
		t.Fatalf("after verification: status %d: %s", w.Code, w.Body)
	}
	a, _ = s.Account(t.Context(), "u")
	if a.Balance(clock.Now()) != 50 || len(sched.Tasks()) != 1 || sched.Tasks()[0].Period != 2 {
		t.Fatalf("after verification: %d credits, scheduled %+v; want 50 and period 2", a.Balance(clock.Now()), sched.Tasks())
	}
}
