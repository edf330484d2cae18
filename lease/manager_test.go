package lease_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/lease"
	"github.com/paymeter/paymeter/store"
)

// watchedStore is a mock.Store that counts its commits (journal writes),
// notes the size of each lease asked of it, can make a commit take a while,
// as Firestore's does, and can fail the next commits: with nothing written,
// or with the write landed unseen (a timeout after the commit).
type watchedStore struct {
	*mock.Store
	latency time.Duration // each commit's

	mu      sync.Mutex
	commits int
	refuse  int           // the next commits to fail
	landed  bool          // whether the failed commits land all the same
	refused int64         // credits of the calls in failed commits
	wants   []int64       // each lease asked for
	badRead int           // the next journal reads to fail
	held    chan struct{} // if set, each commit waits for it to close
}

// holdCommits makes the commits wait until release is called.
func (s *watchedStore) holdCommits() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = make(chan struct{})
	return sync.OnceFunc(func() { close(s.held) })
}

func (s *watchedStore) failReads(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.badRead = n
}

func (s *watchedStore) ReadJournal(ctx context.Context, owner string) (store.Journal, error) {
	s.mu.Lock()
	if s.badRead > 0 {
		s.badRead--
		s.mu.Unlock()
		return store.Journal{}, fmt.Errorf("read journal: %w", context.DeadlineExceeded)
	}
	s.mu.Unlock()
	return s.Store.ReadJournal(ctx, owner)
}

func newWatchedStore() *watchedStore { return &watchedStore{Store: mock.NewStore()} }

func (s *watchedStore) TakeLease(ctx context.Context, r store.LeaseRequest, now time.Time) (store.Taken, error) {
	s.mu.Lock()
	s.wants = append(s.wants, r.Want)
	s.mu.Unlock()
	return s.Store.TakeLease(ctx, r, now)
}

func (s *watchedStore) WriteJournal(ctx context.Context, w store.JournalWrite) (time.Time, error) {
	time.Sleep(s.latency)
	s.mu.Lock()
	held := s.held
	s.mu.Unlock()
	if held != nil {
		<-held
	}
	s.mu.Lock()
	s.commits++
	if s.refuse > 0 {
		s.refuse--
		landed := s.landed
		s.mu.Unlock()
		if landed {
			if _, err := s.Store.WriteJournal(ctx, w); err != nil {
				return time.Time{}, err
			}
		}
		return time.Time{}, fmt.Errorf("write journal: %w", context.DeadlineExceeded)
	}
	s.mu.Unlock()
	return s.Store.WriteJournal(ctx, w)
}

// refuseNext makes the next n commits fail, landing or not.
func (s *watchedStore) refuseNext(n int, landed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse, s.landed = n, landed
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
	m := lease.New(st, clock, lease.Config{Linger: -1, FirstBlock: 10}, nil) // blocks from 10 to 1000, leases of 30 s
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

// An account's first lease on an instance is FirstBlock (100 by default),
// since its pace is not known, but never more than half the balance (the
// instance has not seen it yet): a Free account's 50 credits are not all
// leased to the first instance that serves it.
func TestFirstLeaseIsLargeButAtMostHalfTheBalance(t *testing.T) {
	for _, tt := range []struct {
		credits, want int64
	}{{10_000, 100}, {50, 25}, {1, 1}} {
		st := newWatchedStore()
		hash := account(t, st, "fia", tt.credits)
		m := lease.New(st, clock.Real{}, lease.Config{Linger: -1}, nil)
		if _, err := m.DebitKey(context.Background(), hash, 1, time.Now()); err != nil {
			t.Fatal(err)
		}
		a, err := st.Account(context.Background(), "fia")
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Leases) != 1 || a.Leases[0].Amount != tt.want {
			t.Errorf("%d credits: leases %+v, want one of %d", tt.credits, a.Leases, tt.want)
		}
		closeAll(t, m)
	}
}

// A write that fails, every retry included, answers its calls 503 and
// retires its lease: the next call takes a new one. The calls answered 503
// are not charged and every call served is: exactly.
func TestFailedCommitRetiresItsLeaseAndCharges503sNothing(t *testing.T) {
	st := newWatchedStore()
	hash := account(t, st, "cai", 1000)
	m := lease.New(st, clock.Real{}, lease.Config{Linger: -1, MinBlock: 100}, nil)
	served, unavailable := debitAround(t, m, hash, func() { st.refuseNext(3, false) })
	_, _, wants := st.seen()
	if unavailable == 0 {
		t.Error("no call answered unavailable")
	}
	if served != 22-unavailable {
		t.Errorf("%d of 22 calls served, %d unavailable", served, unavailable)
	}
	if len(wants) != 2 {
		t.Errorf("%d leases taken, want 2: the one whose commit failed and the next", len(wants))
	}
	closeAll(t, m)
	if charged := 1000 - balance(t, st, "cai"); charged != served {
		t.Errorf("%d credits charged for %d calls served (%d answered 503)", charged, served, unavailable)
	}
	if used := usedToday(t, st, "cai"); used != served {
		t.Errorf("usage counts %d, %d calls were served", used, served)
	}
}

// A write that reports a failure but landed (a timeout after the commit)
// is found in the journal: its calls are answered 200 and charged, not
// 503 and charged.
func TestCommitThatLandedUnseenIsServed(t *testing.T) {
	st := newWatchedStore()
	hash := account(t, st, "cat", 1000)
	m := lease.New(st, clock.Real{}, lease.Config{Linger: -1, MinBlock: 100}, nil)
	served, unavailable := debitAround(t, m, hash, func() { st.refuseNext(1, true) })
	if unavailable != 0 || served != 22 {
		t.Errorf("%d calls served, %d unavailable; want all 22 served", served, unavailable)
	}
	closeAll(t, m)
	if charged := 1000 - balance(t, st, "cat"); charged != served {
		t.Errorf("%d credits charged for %d calls served", charged, served)
	}
}

// A write that landed unseen and then failed its retries: its calls are
// answered 503, and the next write takes their use back out of the journal
// before the lease is settled.
func TestCommitThatLandedUnseenThenFailedIsCorrected(t *testing.T) {
	st := newWatchedStore()
	hash := account(t, st, "cas", 1000)
	m := lease.New(st, clock.Real{}, lease.Config{Linger: -1, MinBlock: 100}, nil)
	st.mu.Lock()
	st.refuse, st.landed = 1, true
	st.mu.Unlock()
	// The first write lands unseen; make the journal read fail too, so the
	// manager cannot tell, and its retries fail.
	st.failReads(2)
	served, unavailable := debitAround(t, m, hash, func() {})
	closeAll(t, m)
	if charged := 1000 - balance(t, st, "cas"); charged != served {
		t.Errorf("%d credits charged for %d calls served and %d answered 503", charged, served, unavailable)
	}
}

// A call admitted without waiting for its record (Admit, as the upstream
// proxy does) returns while the write is in flight; Wait reports whether
// its use landed. One whose write fails, every retry included, is told it
// was not recorded, every time it asks, and is not charged; the next call
// is recorded and charged.
func TestAdmittedCallIsChargedOnlyOnceRecorded(t *testing.T) {
	st := newWatchedStore()
	hash := account(t, st, "ada", 1000)
	m := lease.New(st, clock.Real{}, lease.Config{Linger: -1, MinBlock: 100}, nil)
	ctx := context.Background()
	if _, err := m.Charge(ctx, hash, 1, "", time.Now()); err != nil { // takes the lease
		t.Fatal(err)
	}

	release := st.holdCommits()
	defer release()
	st.refuseNext(3, false)
	quick, cancelQuick := context.WithTimeout(ctx, 2*time.Second) // Admit must not wait for the write
	defer cancelQuick()
	p, err := m.Admit(quick, hash, 5, "/v1/", time.Now())
	if err != nil {
		t.Fatalf("admit while the write is held: %v", err)
	}
	if p.Debited.Cost != 5 || p.Debited.Remaining != 1000-1-5 || p.Debited.Route != "/v1/" {
		t.Errorf("admitted charge %+v, want 5 credits on /v1/ and %d left", p.Debited, 1000-1-5)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := p.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait while the write is held = %v, want the context's deadline", err)
	}
	release()
	for range 2 {
		if err := p.Wait(ctx); billing.ErrorCode(err) != billing.CodeUnavailable {
			t.Fatalf("wait after the write failed = %v, want unavailable", err)
		}
	}

	next, err := m.Admit(ctx, hash, 2, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := next.Wait(ctx); err != nil {
		t.Fatalf("the next call: %v", err)
	}
	closeAll(t, m)
	if charged := 1000 - balance(t, st, "ada"); charged != 1+2 {
		t.Errorf("%d credits charged, want 3: the call not recorded is not charged", charged)
	}
	if used := usedToday(t, st, "ada"); used != 1+2 {
		t.Errorf("usage counts %d, want 3", used)
	}
}

// debitAround makes one call, runs between, then 20 concurrent calls and
// one more, and returns how many were served and how many unavailable.
func debitAround(t *testing.T, m *lease.Manager, hash string, between func()) (served, unavailable int64) {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
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
	between()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(debit)
	}
	wg.Wait()
	debit()
	return served, unavailable
}

func usedToday(t *testing.T, s *watchedStore, uid string) int64 {
	t.Helper()
	days, err := s.Usage(context.Background(), uid, time.Now(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, d := range days {
		n += d.Credits
	}
	return n
}

// The idle sweep runs on the request path: a call that arrives after a
// second of quiet, on an account the instance has not served yet, keeps its
// account (and so its lease): 50 calls spend all 50 credits, none stranded.
func TestFirstCallAfterQuietKeepsItsLease(t *testing.T) {
	st := newWatchedStore()
	hash := account(t, st, "fay", 50)
	m := lease.New(st, clock.Real{}, lease.Config{Linger: -1, Idle: 200 * time.Millisecond}, nil)
	defer closeAll(t, m)
	time.Sleep(300 * time.Millisecond) // the first call runs the sweep
	for i := range 50 {
		if _, err := m.DebitKey(context.Background(), hash, 1, time.Now()); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
		if i == 0 {
			time.Sleep(150 * time.Millisecond) // the next call runs the sweep again
		}
	}
	if _, err := m.DebitKey(context.Background(), hash, 1, time.Now()); !errors.Is(err, billing.ErrInsufficientCredits) {
		t.Fatalf("call 51: %v", err)
	}
}

// An instance that keeps recording calls keeps its lease past the lease's
// lifetime: each journal write renews it, so a steady key costs no lease
// transaction per lifetime. Three lifetimes of calls on a lease of 1,000
// take it once.
func TestJournalWritesRenewTheLease(t *testing.T) {
	st := newWatchedStore()
	hash := account(t, st, "gus", 5000)
	const ttl = 400 * time.Millisecond
	m := lease.New(st, clock.Real{}, lease.Config{TTL: ttl, MinBlock: 1000, Linger: -1}, nil)
	defer closeAll(t, m)
	for end := time.Now().Add(3 * ttl); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if _, err := m.DebitKey(context.Background(), hash, 1, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, wants := st.seen(); len(wants) != 1 {
		t.Fatalf("%d lease transactions (%v) over three lease lifetimes, want 1", len(wants), wants)
	}
}

// stalledTakes fails every lease transaction with err.
type stalledTakes struct {
	*watchedStore
	err error
}

func (s stalledTakes) TakeLease(context.Context, store.LeaseRequest, time.Time) (store.Taken, error) {
	return store.Taken{}, fmt.Errorf("take lease: %w", s.err)
}

// A lease transaction that times out or is aborted under contention answers
// the call unavailable (503: try again), not an internal error, and charges
// nothing.
func TestLeaseTransactionThatTimesOutAnswersUnavailable(t *testing.T) {
	for _, cause := range []error{context.DeadlineExceeded, status.Error(codes.Aborted, "too much contention"),
		status.Error(codes.Unavailable, "try later")} {
		st := newWatchedStore()
		hash := account(t, st, "hal", 50)
		m := lease.New(stalledTakes{st, cause}, clock.Real{}, lease.Config{Linger: -1}, nil)
		_, err := m.DebitKey(context.Background(), hash, 1, time.Now())
		if code := billing.ErrorCode(err); code != billing.CodeUnavailable {
			t.Errorf("%v: code %q (%v), want unavailable", cause, code, err)
		}
		closeAll(t, m)
		if got := balance(t, st, "hal"); got != 50 {
			t.Errorf("%v: balance %d, want 50", cause, got)
		}
	}
}

// heldAheadTakes holds every lease transaction taken ahead until release
// is closed.
type heldAheadTakes struct {
	*watchedStore
	release chan struct{}
	held    chan struct{} // a take ahead is being held
}

func (s heldAheadTakes) TakeLease(ctx context.Context, r store.LeaseRequest, now time.Time) (store.Taken, error) {
	if r.Ahead {
		select {
		case s.held <- struct{}{}:
		default:
		}
		<-s.release
	}
	return s.watchedStore.TakeLease(ctx, r, now)
}

// Once a key's block has grown, its next lease is taken ahead while the
// current one still serves: calls go on being answered during that
// transaction, and only the call that started it waits for it (so that the
// transaction runs while a request is in flight: Cloud Run gives CPU only
// then).
func TestNextLeaseIsTakenAhead(t *testing.T) {
	st := heldAheadTakes{newWatchedStore(), make(chan struct{}), make(chan struct{}, 1)}
	hash := account(t, st.watchedStore, "ida", 100000)
	m := lease.New(st, clock.Real{}, lease.Config{Linger: -1, FirstBlock: 10, MaxBlock: 100}, nil)
	defer closeAll(t, m)
	call := func() chan error {
		done := make(chan error, 1)
		go func() {
			_, err := m.DebitKey(context.Background(), hash, 1, time.Now())
			done <- err
		}()
		return done
	}
	var trigger chan error
	for i := 0; trigger == nil; i++ {
		if i == 200 {
			t.Fatal("200 calls and no lease taken ahead")
		}
		done := call()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-st.held:
			trigger = done // it waits for the take ahead, which is held
		}
	}
	for range 5 { // served from the current lease meanwhile
		select {
		case err := <-call():
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a call waited for the lease taken ahead")
		}
	}
	select {
	case err := <-trigger:
		t.Fatalf("the call that took the lease ahead was answered (%v) before its transaction ended", err)
	default:
	}
	close(st.release)
	if err := <-trigger; err != nil {
		t.Fatal(err)
	}
}

// returnCounter counts the return transactions in flight at once.
type returnCounter struct {
	*watchedStore
	mu             sync.Mutex
	inFlight, most int
	returned       int
}

func (s *returnCounter) ReturnLease(ctx context.Context, uid string, now time.Time, uses ...store.LeaseUse) (int64, error) {
	s.mu.Lock()
	s.inFlight++
	s.most = max(s.most, s.inFlight)
	s.mu.Unlock()
	time.Sleep(5 * time.Millisecond) // a transaction's round trips
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.returned++
		s.mu.Unlock()
	}()
	return s.watchedStore.ReturnLease(ctx, uid, now, uses...)
}

// An instance holding leases on many accounts returns them a few at a
// time, not all at once: after a burst over a thousand keys, an idle sweep
// that started a thousand return transactions together timed them all out
// on the emulator and starved the instance's calls (compare.sh's
// revocation step failed). An idle sweep runs 4 at a time; Close, which
// has 10 s, 16.
func TestManyReturnsRunAFewAtATime(t *testing.T) {
	st := &returnCounter{watchedStore: newWatchedStore()}
	clock := clock.NewFixed(time.Now())
	m := lease.New(st, clock, lease.Config{Linger: -1, TTL: time.Hour, Idle: time.Minute}, nil)
	const accounts = 100
	for i := range accounts {
		hash := account(t, st.watchedStore, fmt.Sprintf("u%d", i), 1000)
		if _, err := m.DebitKey(context.Background(), hash, 1, clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	returned := func(most int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			st.mu.Lock()
			n, at := st.returned, st.most
			st.mu.Unlock()
			if at > most {
				t.Fatalf("%d returns at once, want at most %d", at, most)
			}
			if n == accounts {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d leases returned", n, accounts)
			}
		}
	}
	// A minute on, one call on another account finds them all idle.
	clock.Add(time.Minute + time.Second)
	if _, err := m.DebitKey(context.Background(), account(t, st.watchedStore, "caller", 1000), 1, clock.Now()); err != nil {
		t.Fatal(err)
	}
	returned(4)
	for i := range accounts {
		if got := balance(t, st.watchedStore, fmt.Sprintf("u%d", i)); got != 999 {
			t.Fatalf("u%d: balance %d after one call on 1000 credits", i, got)
		}
	}
	// Close returns the rest 16 at a time.
	st.mu.Lock()
	st.returned, st.most = accounts-1, 0 // the caller's lease is left
	st.mu.Unlock()
	closeAll(t, m)
	returned(16)
}
