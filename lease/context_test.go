package lease_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/lease"
	"github.com/paymeter/paymeter/store"
)

// memLeases is an in-memory lease.Store of one account: TakeLease takes up
// to the balance, ReturnLease gives back what was not recorded as used.
type memLeases struct {
	mu      sync.Mutex
	balance int64
	amount  map[string]int64
	used    map[string]int64
	takes   int
	hold    chan struct{} // if set, TakeLease waits for it (or its context)
}

func newMemLeases(balance int64) *memLeases {
	return &memLeases{balance: balance, amount: map[string]int64{}, used: map[string]int64{}}
}

func (s *memLeases) Key(context.Context, string) (billing.APIKey, error) {
	return billing.APIKey{UID: "u1"}, nil
}

func (s *memLeases) TakeLease(ctx context.Context, r store.LeaseRequest, now time.Time) (store.Taken, error) {
	s.mu.Lock()
	s.takes++
	hold := s.hold
	s.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return store.Taken{}, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settle(r.Settle)
	n := min(r.Want, s.balance)
	if n == 0 {
		return store.Taken{Balance: s.balance}, billing.ErrInsufficientCredits
	}
	s.balance -= n
	s.amount[r.ID] = n
	return store.Taken{Lease: billing.Lease{ID: r.ID, Amount: n, TakenAt: now, ExpiresAt: now.Add(r.TTL)}, Balance: s.balance}, nil
}

func (s *memLeases) WriteJournal(_ context.Context, w store.JournalWrite) (time.Time, error) {
	return time.Unix(0, w.Seq), nil
}

func (s *memLeases) ReadJournal(context.Context, string) (store.Journal, error) {
	return store.Journal{}, nil
}

func (s *memLeases) WatchRevocations(ctx context.Context, _ time.Time, _ func(string)) error {
	<-ctx.Done()
	return ctx.Err()
}

// settle gives back what the uses did not spend. s.mu is held.
func (s *memLeases) settle(uses []store.LeaseUse) {
	for _, u := range uses {
		if a, ok := s.amount[u.ID]; ok {
			s.balance += a - u.Used
			delete(s.amount, u.ID)
		}
	}
}

func (s *memLeases) ReturnLease(_ context.Context, _ string, _ time.Time, uses ...store.LeaseUse) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settle(uses)
	return s.balance, nil
}

func (s *memLeases) state() (balance int64, takes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.balance, s.takes
}

func newManager(t *testing.T, st lease.Store) *lease.Manager {
	t.Helper()
	m := lease.New(st, clock.Real{}, lease.Config{Linger: -1, Timeout: 30 * time.Second}, nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

// TestTooExpensiveAnswers402AtOnce: with 3 credits a call costing 5 is
// refused after one lease is taken, with no take and return loop; a second
// one is refused at once from what the instance knows; cheaper calls are
// still served from the lease, and every credit is accounted for.
func TestTooExpensiveAnswers402AtOnce(t *testing.T) {
	st := newMemLeases(3)
	m := newManager(t, st)
	ctx := context.Background()
	for i := range 2 {
		if _, err := m.DebitKey(ctx, "h", 5, time.Now()); !errors.Is(err, billing.ErrInsufficientCredits) {
			t.Fatalf("call %d costing 5 with 3 credits: %v, want insufficient credits", i+1, err)
		}
		if _, takes := st.state(); takes != 1 {
			t.Fatalf("call %d: %d leases taken, want 1 (no take and return loop)", i+1, takes)
		}
	}
	for want := int64(2); want >= 0; want-- {
		if left, err := m.DebitKey(ctx, "h", 1, time.Now()); err != nil || left != want {
			t.Fatalf("call costing 1: %d %v, want %d left", left, err, want)
		}
	}
	if _, err := m.DebitKey(ctx, "h", 1, time.Now()); !errors.Is(err, billing.ErrInsufficientCredits) {
		t.Fatalf("call with nothing left: %v", err)
	}
	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
	if balance, _ := st.state(); balance != 0 {
		t.Errorf("balance after close %d, want 0 (3 spent)", balance)
	}
}

// TestLeaseAndBalanceTogetherPay: a call that the lease alone cannot pay,
// but the lease and the balance beside it can, is served: the lease's
// credits are back before the next is taken.
func TestLeaseAndBalanceTogetherPay(t *testing.T) {
	st := newMemLeases(12)
	m := newManager(t, st)
	ctx := context.Background()
	for range 9 { // the first lease is 10 credits; 2 stay beside it
		if _, err := m.DebitKey(ctx, "h", 1, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// 1 left in the lease and 2 beside it: exactly 3.
	if left, err := m.DebitKey(ctx, "h", 3, time.Now()); err != nil || left != 0 {
		t.Fatalf("call costing 3 with 1 leased and 2 beside: %d %v", left, err)
	}
}

// TestCancelledRequestStopsWaiting: a caller whose request is cancelled
// while the lease it needs is being taken returns at once with the
// context's error; the take finishes for the others.
func TestCancelledRequestStopsWaiting(t *testing.T) {
	st := newMemLeases(100)
	st.hold = make(chan struct{})
	m := newManager(t, st)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := m.DebitKey(ctx, "h", 1, time.Now())
	if waited := time.Since(start); !errors.Is(err, context.Canceled) || waited > 2*time.Second {
		t.Fatalf("cancelled call: %v after %v, want context.Canceled at once", err, waited)
	}
	close(st.hold)
	if left, err := m.DebitKey(context.Background(), "h", 1, time.Now()); err != nil || left != 99 {
		t.Fatalf("next call: %d %v, want 99 left", left, err)
	}
}
