package lease_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/lease"
	"github.com/paymeter/paymeter/store"
)

// watchedStore is a mock.Store that counts its commits (RecordLeaseUses),
// notes the size of each lease asked of it, can make a commit take a while,
// as Firestore's does, and can refuse the next commits.
type watchedStore struct {
	*mock.Store
	latency time.Duration // each commit's

	mu      sync.Mutex
	commits int
	refuse  int     // the next commits to refuse
	refused int64   // credits of the calls in refused commits
	wants   []int64 // each lease asked for
}

func newWatchedStore() *watchedStore { return &watchedStore{Store: mock.NewStore()} }

func (s *watchedStore) TakeLease(ctx context.Context, r store.LeaseRequest, now time.Time) (billing.Lease, int64, error) {
	s.mu.Lock()
	s.wants = append(s.wants, r.Want)
	s.mu.Unlock()
	return s.Store.TakeLease(ctx, r, now)
}

func (s *watchedStore) RecordLeaseUses(ctx context.Context, uses []store.LeaseUse, now time.Time) error {
	time.Sleep(s.latency)
	s.mu.Lock()
	s.commits++
	if s.refuse > 0 {
		s.refuse--
		for _, u := range uses {
			s.refused += u.Delta
		}
		s.mu.Unlock()
		return fmt.Errorf("record lease uses: %w", context.DeadlineExceeded) // it may or may not have landed
	}
	s.mu.Unlock()
	return s.Store.RecordLeaseUses(ctx, uses, now)
}

// refuseNext makes the next n commits fail.
func (s *watchedStore) refuseNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = n
}

// seen returns the commits so far, the credits of the calls in refused
// commits and the size of each lease asked for.
func (s *watchedStore) seen() (commits int, refused int64, wants []int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commits, s.refused, slices.Clone(s.wants)
}

// Many concurrent calls on one key are recorded in few commits, since the
// calls that arrive while one commit is in flight share the next; every
// call is answered and debited once.
func TestConcurrentCallsShareCommits(t *testing.T) {
	st := newWatchedStore()
	st.latency = time.Millisecond
	hash := account(t, st, "ann", 10_000)
	m := lease.New(st, clock.Real{}, lease.Config{}, nil)
	const callers, each = 32, 25
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range each {
				if _, err := m.DebitKey(context.Background(), hash, 1, time.Now()); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	closeAll(t, m)
	calls := callers * each
	if commits, _, _ := st.seen(); commits*10 > calls {
		t.Errorf("%d calls took %d commits, want at most a tenth as many", calls, commits)
	}
	if got := balance(t, st, "ann"); got != 10_000-int64(calls) {
		t.Errorf("balance %d after %d calls from 10000 credits", got, calls)
	}
}

// A key that spends its lease fast is given a larger one next; a lease that
// comes back mostly unused makes the next one smaller.
func TestLeaseBlocksGrowWhenBusyAndShrinkWhenNot(t *testing.T) {
	st := newWatchedStore()
	hash := account(t, st, "bea", 10_000)
	clock := clock.NewFixed(time.Now())
	m := lease.New(st, clock, lease.Config{Linger: -1}, nil) // blocks from 10 to 1000, leases of 30 s
	defer closeAll(t, m)
	debit := func() {
		t.Helper()
		if _, err := m.DebitKey(context.Background(), hash, 1, clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// The first lease, 10 credits, is spent in an instant: the 11th call
	// takes the largest block.
	for range 11 {
		debit()
	}
	// 26 s on, that lease has stopped serving calls (it would expire before
	// the next commit could land) with 1 credit of its 1000 used: the next
	// call takes half as many.
	clock.Add(26 * time.Second)
	debit()
	if _, _, wants := st.seen(); !slices.Equal(wants, []int64{10, 1000, 500}) {
		t.Errorf("leases asked for %v, want [10 1000 500]", wants)
	}
}

// A commit that fails answers its calls 503 and retires its lease: the
// next call takes a new one. No call is answered 200 unrecorded.
func TestFailedCommitRetiresItsLease(t *testing.T) {
	st := newWatchedStore()
	hash := account(t, st, "cai", 1000)
	m := lease.New(st, clock.Real{}, lease.Config{Linger: -1, MinBlock: 100}, nil)
	ctx := context.Background()
	var mu sync.Mutex
	var served, unavailable int64
	debit := func() {
		_, err := m.DebitKey(ctx, hash, 1, time.Now())
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			served++
		case billing.ErrorCode(err) == billing.CodeUnavailable:
			unavailable++
		default:
			t.Errorf("call: %v, want served or unavailable", err)
		}
	}
	debit()
	st.refuseNext(1)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(debit)
	}
	wg.Wait()
	debit()
	_, refused, wants := st.seen()
	if unavailable == 0 || unavailable != refused {
		t.Errorf("%d calls answered unavailable, %d were in the refused commit", unavailable, refused)
	}
	if served != 22-unavailable {
		t.Errorf("%d of 22 calls served, %d unavailable", served, unavailable)
	}
	if len(wants) != 2 {
		t.Errorf("%d leases taken, want 2: the one whose commit failed and the next", len(wants))
	}
	closeAll(t, m)
	// The refused commit may have landed (a timeout may have), so its calls
	// may be charged; every call served is.
	if charged := 1000 - balance(t, st, "cai"); charged < served || charged > served+unavailable {
		t.Errorf("%d credits charged for %d calls served and %d unavailable", charged, served, unavailable)
	}
}
