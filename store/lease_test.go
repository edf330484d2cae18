package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/store"
)

// topUp gives uid n more credits that never expire.
func topUp(t *testing.T, s *store.Store, uid string, n int64) {
	t.Helper()
	_, err := s.UpdateAccount(context.Background(), uid, func(a *billing.Account) error {
		a.AddGrant(billing.Grant{ID: "adj-" + uid, Source: billing.SourceAdjustment, Amount: n, Remaining: n}, t0, "test credits")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// provisionNow provisions uid at the wall clock's now, which lease expiry
// is measured against.
func provisionNow(t *testing.T, s *store.Store, uid string) {
	t.Helper()
	if _, _, err := s.Provision(context.Background(), billing.Identity{UID: uid}, time.Now().Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
}

func balance(t *testing.T, s *store.Store, uid string, now time.Time) int64 {
	t.Helper()
	a, err := s.Account(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance(now)
}

func TestLeaseSettlesWithTheUseItRecorded(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provisionNow(t, s, "ada")
	topUp(t, s, "ada", 1000) // 1,050 with the Free grant
	now := time.Now()
	l, bal, err := s.TakeLease(ctx, store.LeaseRequest{UID: "ada", ID: "i1-1", Owner: "i1", Want: 100, TTL: time.Minute}, now)
	if err != nil || l.Amount != 100 || bal != 950 {
		t.Fatalf("lease %+v balance %d: %v", l, bal, err)
	}
	for _, used := range []int64{10, 30} { // totals, as the manager flushes them
		if err := recordLeaseUse(ctx, s, "ada", l.ID, used, 20, now); err != nil {
			t.Fatal(err)
		}
	}
	if got := balance(t, s, "ada", now); got != 950 {
		t.Fatalf("balance while leased = %d", got)
	}
	if bal, err := s.ReturnLease(ctx, "ada", now, l.ID); err != nil || bal != 1020 {
		t.Fatalf("balance after return %d: %v", bal, err)
	}
	if bal, err := s.ReturnLease(ctx, "ada", now, l.ID); err != nil || bal != 1020 {
		t.Fatalf("returned twice: %d, %v", bal, err)
	}
	if err := recordLeaseUse(ctx, s, "ada", l.ID, 31, 1, now); !errors.Is(err, store.ErrLeaseGone) {
		t.Fatalf("recorded use of a settled lease: %v", err)
	}
	days, err := s.Usage(ctx, "ada", now, now)
	if err != nil || len(days) != 1 || days[0].Credits != 40 {
		t.Fatalf("usage %+v: %v", days, err)
	}
}

// A crashed instance never returns its lease: the next account transaction
// (here a per-call debit) settles it with exactly the use it recorded.
func TestExpiredLeaseIsSettledByTheNextDebit(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provisionNow(t, s, "bob")
	_, hash := newKey(t, s, "bob")
	past := time.Now().Add(-time.Hour) // the lease expired long ago
	l, _, err := s.TakeLease(ctx, store.LeaseRequest{UID: "bob", ID: "dead-1", Owner: "dead", Want: 40, TTL: time.Second}, past)
	if err != nil {
		t.Fatal(err)
	}
	if err := recordLeaseUse(ctx, s, "bob", l.ID, 7, 7, past); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rem, err := s.DebitKey(ctx, hash, 1, now)
	if err != nil || rem != 50-7-1 {
		t.Fatalf("remaining %d: %v", rem, err)
	}
	a, err := s.Account(ctx, "bob")
	if err != nil || len(a.Leases) != 0 {
		t.Fatalf("leases left %+v: %v", a.Leases, err)
	}
	if err := recordLeaseUse(ctx, s, "bob", l.ID, 8, 1, now); !errors.Is(err, store.ErrLeaseGone) {
		t.Fatalf("the lease document survived settlement: %v", err)
	}
}

func TestTakeLeaseAtZeroSettlesAndAnswersInsufficient(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provisionNow(t, s, "cy")
	past := time.Now().Add(-time.Hour)
	l, _, err := s.TakeLease(ctx, store.LeaseRequest{UID: "cy", ID: "dead-1", Want: 1000, TTL: time.Second}, past)
	if err != nil || l.Amount != 50 {
		t.Fatalf("lease %+v: %v", l, err)
	}
	if err := recordLeaseUse(ctx, s, "cy", l.ID, 50, 50, past); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.TakeLease(ctx, store.LeaseRequest{UID: "cy", ID: "i2-1", Want: 10, TTL: time.Minute}, time.Now())
	if !errors.Is(err, billing.ErrInsufficientCredits) {
		t.Fatalf("err = %v", err)
	}
	a, _ := s.Account(ctx, "cy")
	if len(a.Leases) != 0 || a.Balance(time.Now()) != 0 {
		t.Fatalf("account %+v", a)
	}
}

// A flush racing the settlement of its lease is either counted by the
// settlement or refused: never recorded after the settlement read the use.
func TestRecordRacingSettlementIsCountedOrRefused(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provisionNow(t, s, "eve")
	topUp(t, s, "eve", 10_000)
	want := balance(t, s, "eve", time.Now())
	var counted, refused int
	defer func() { t.Logf("flushes counted by the settlement: %d, refused: %d", counted, refused) }()
	for i := range 15 {
		now := time.Now()
		l, _, err := s.TakeLease(ctx, store.LeaseRequest{UID: "eve", ID: fmt.Sprintf("race-%d", i), Want: 100, TTL: time.Minute}, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := recordLeaseUse(ctx, s, "eve", l.ID, 10, 10, now); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var recErr, retErr error
		wg.Add(2)
		go func() { defer wg.Done(); recErr = recordLeaseUse(ctx, s, "eve", l.ID, 25, 15, now) }()
		go func() { defer wg.Done(); _, retErr = s.ReturnLease(ctx, "eve", now, l.ID) }()
		wg.Wait()
		if retErr != nil {
			t.Fatal(retErr)
		}
		switch {
		case recErr == nil:
			want -= 25
			counted++
		case errors.Is(recErr, store.ErrLeaseGone):
			want -= 10
			refused++
		default:
			t.Fatal(recErr)
		}
		if got := balance(t, s, "eve", time.Now()); got != want {
			t.Fatalf("round %d: balance %d, want %d (record: %v)", i, got, want, recErr)
		}
	}
}

func TestRecordLeaseUsesIsOneCommitForManyAccounts(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	now := time.Now()
	var uses []store.LeaseUse
	for _, uid := range []string{"fay", "gus"} {
		provisionNow(t, s, uid)
		l, _, err := s.TakeLease(ctx, store.LeaseRequest{UID: uid, ID: uid + "-1", Want: 20, TTL: time.Minute}, now)
		if err != nil {
			t.Fatal(err)
		}
		uses = append(uses, store.LeaseUse{UID: uid, ID: l.ID, Used: 5, Delta: 5})
	}
	if err := s.RecordLeaseUses(ctx, uses, now); err != nil {
		t.Fatal(err)
	}
	// gus's lease is settled: a commit naming it records nothing, for fay either.
	if _, err := s.ReturnLease(ctx, "gus", now, "gus-1"); err != nil {
		t.Fatal(err)
	}
	uses[0].Used, uses[0].Delta = 8, 3
	uses[1].Used, uses[1].Delta = 9, 4
	if err := s.RecordLeaseUses(ctx, uses, now); !errors.Is(err, store.ErrLeaseGone) {
		t.Fatalf("err = %v", err)
	}
	for uid, want := range map[string]int64{"fay": 5, "gus": 5} {
		days, err := s.Usage(ctx, uid, now, now)
		if err != nil || len(days) != 1 || days[0].Credits != want {
			t.Fatalf("%s usage %+v: %v", uid, days, err)
		}
	}
	if _, err := s.ReturnLease(ctx, "fay", now, "fay-1"); err != nil {
		t.Fatal(err)
	}
	if got := balance(t, s, "fay", now); got != 45 {
		t.Fatalf("fay's balance %d", got)
	}
}

// recordLeaseUse records that used credits of lease id have been spent so
// far, delta of them since the last record: RecordLeaseUses with one lease.
func recordLeaseUse(ctx context.Context, s *store.Store, uid, id string, used, delta int64, now time.Time) error {
	return s.RecordLeaseUses(ctx, []store.LeaseUse{{UID: uid, ID: id, Used: used, Delta: delta}}, now)
}
