package lease_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/emulator"
	"github.com/paymeter/paymeter/lease"
	"github.com/paymeter/paymeter/store"
)

// newStore returns a Store on a project of its own in the Firestore emulator.
func newStore(t *testing.T) *store.Store {
	t.Helper()
	emulator.Firestore(t)
	client, err := firestore.NewClient(context.Background(), fmt.Sprintf("demo-lease-%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return store.New(client, billing.DefaultCatalog().Free())
}

// accountStore is what the tests set accounts up and read them back with:
// store.Store and mock.Store both have it.
type accountStore interface {
	Account(ctx context.Context, uid string) (*billing.Account, error)
	Provision(ctx context.Context, id billing.Identity, now time.Time) (*billing.Account, bool, error)
	UpdateAccount(ctx context.Context, uid string, fn func(*billing.Account) error) (*billing.Account, error)
	CreateKey(ctx context.Context, hash string, key billing.APIKey) error
}

// account provisions uid with credits in all (its Free 50 and the rest as
// an adjustment, or fewer than 50 by spending them) and returns a key hash.
func account(t *testing.T, s accountStore, uid string, credits int64) string {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	if _, _, err := s.Provision(ctx, billing.Identity{UID: uid}, now); err != nil {
		t.Fatal(err)
	}
	_, err := s.UpdateAccount(ctx, uid, func(a *billing.Account) error {
		if credits < 50 {
			return a.Debit(50-credits, now)
		}
		a.AddGrant(billing.Grant{ID: "adj", Source: billing.SourceAdjustment, Amount: credits - 50, Remaining: credits - 50}, now, "test")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, key, hash, err := billing.NewAPIKey(rand.Reader, uid, "test", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateKey(ctx, hash, key); err != nil {
		t.Fatal(err)
	}
	return hash
}

func balance(t *testing.T, s accountStore, uid string) int64 {
	t.Helper()
	a, err := s.Account(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Leases) != 0 {
		t.Fatalf("leases still out: %+v", a.Leases)
	}
	return a.Balance(time.Now())
}

func closeAll(t *testing.T, ms ...*lease.Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, m := range ms {
		if err := m.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// Two instances on one account, many concurrent calls each, past the end of
// the credits: every 200 is debited exactly once and nothing else is.
//
// A call may be answered unavailable (503): its lease transaction timed out
// or was aborted. Nothing is charged for it and the client retries, as the
// contract tells it to. On the emulator, under the load of the suite's other
// packages, two instances' lease transactions on one account can wait past
// the 10 s operation deadline; the test's clients retry up to 3 times and
// every call must be served in the end while credits remain.
func TestTwoInstancesSpendExactly(t *testing.T) {
	tests := []struct {
		name    string
		credits int64
		calls   int
	}{
		{"credits to spare", 600, 400},
		{"past the last credit", 120, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			hash := account(t, s, "ada", tt.credits)
			cfg := lease.Config{TTL: 5 * time.Second, Idle: 500 * time.Millisecond}
			cfg.Owner = "i1"
			m1 := lease.New(s, clock.Real{}, cfg, nil)
			cfg.Owner = "i2"
			m2 := lease.New(s, clock.Real{}, cfg, nil)
			var ok, broke, retried atomic.Int64
			var wg sync.WaitGroup
			var next atomic.Int64
			for c := range 40 {
				m := []*lease.Manager{m1, m2}[c%2]
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(tt.calls) {
						_, err := m.DebitKey(context.Background(), hash, 1, time.Now())
						for try := 0; try < 3 && errors.Is(err, billing.ErrUnavailable); try++ {
							retried.Add(1)
							_, err = m.DebitKey(context.Background(), hash, 1, time.Now())
						}
						switch {
						case err == nil:
							ok.Add(1)
						case !errors.Is(err, billing.ErrInsufficientCredits):
							broke.Add(1)
							t.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			closeAll(t, m1, m2)
			if n := retried.Load(); n > 0 {
				t.Logf("%d calls answered unavailable and retried", n)
			}
			if got := balance(t, s, "ada"); got != tt.credits-ok.Load() || ok.Load() > tt.credits {
				t.Fatalf("balance %d after %d calls answered from %d credits", got, ok.Load(), tt.credits)
			}
			if int64(tt.calls) <= tt.credits && ok.Load() != int64(tt.calls) {
				t.Fatalf("%d of %d calls served with credits to spare", ok.Load(), tt.calls)
			}
		})
	}
}

// A Free account with 3 credits leases 3, serves 3 calls and then answers
// insufficient, debiting nothing more.
func TestSmallBalanceLeasesWhatIsLeft(t *testing.T) {
	s := newStore(t)
	hash := account(t, s, "bo", 3)
	m := lease.New(s, clock.Real{}, lease.Config{}, nil)
	var ok int
	for range 5 {
		rem, err := m.DebitKey(context.Background(), hash, 1, time.Now())
		if err == nil {
			ok++
			if rem != int64(3-ok) {
				t.Errorf("call %d: remaining %d", ok, rem)
			}
		} else if !errors.Is(err, billing.ErrInsufficientCredits) {
			t.Fatal(err)
		}
	}
	closeAll(t, m)
	if ok != 3 || balance(t, s, "bo") != 0 {
		t.Fatalf("%d calls served, balance %d", ok, balance(t, s, "bo"))
	}
}

// Without the revocation listener, a revoked key stops working on an
// instance within KeyTTL; an unknown key is refused.
func TestRevocationTakesEffectWithinTheKeyTTL(t *testing.T) {
	s := newStore(t)
	hash := account(t, s, "cy", 100)
	m := lease.New(s, clock.Real{}, lease.Config{KeyTTL: 300 * time.Millisecond, NoWatch: true}, nil)
	defer closeAll(t, m)
	ctx := context.Background()
	if _, err := m.DebitKey(ctx, hash, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	keys, err := s.Keys(ctx, "cy")
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v: %v", keys, err)
	}
	if err := s.RevokeKey(ctx, "cy", keys[0].ID); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	for {
		_, err := m.DebitKey(ctx, hash, 1, time.Now())
		if errors.Is(err, billing.ErrInvalidAPIKey) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(revoked) > 300*time.Millisecond+100*time.Millisecond {
			t.Fatalf("a key revoked %s ago still works", time.Since(revoked))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := m.DebitKey(ctx, billing.HashKey("pm_unknown"), 1, time.Now()); !errors.Is(err, billing.ErrInvalidAPIKey) {
		t.Fatalf("unknown key: %v", err)
	}
}

// With the listener, a revoked key stops working within a second, long
// before its cache entry (a minute) expires.
func TestRevocationReachesTheInstanceWithinASecond(t *testing.T) {
	s := newStore(t)
	hash := account(t, s, "cz", 100)
	m := lease.New(s, clock.Real{}, lease.Config{KeyTTL: time.Minute}, nil)
	defer closeAll(t, m)
	ctx := context.Background()
	if _, err := m.DebitKey(ctx, hash, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the listener has started
	keys, err := s.Keys(ctx, "cz")
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v: %v", keys, err)
	}
	if err := s.RevokeKey(ctx, "cz", keys[0].ID); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	for {
		_, err := m.DebitKey(ctx, hash, 1, time.Now())
		if errors.Is(err, billing.ErrInvalidAPIKey) {
			t.Logf("refused %s after the revocation", time.Since(revoked).Round(time.Millisecond))
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(revoked) > time.Second {
			t.Fatalf("a key revoked %s ago still works", time.Since(revoked))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An idle lease goes back at the next call on the instance (any account's):
// nothing runs between requests.
func TestIdleLeaseComesBackOnTheRequestPath(t *testing.T) {
	s := newStore(t)
	hash := account(t, s, "di", 500)
	other := account(t, s, "do", 500)
	m := lease.New(s, clock.Real{}, lease.Config{Idle: 200 * time.Millisecond}, nil)
	defer closeAll(t, m)
	for range 3 {
		if _, err := m.DebitKey(context.Background(), hash, 1, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if got := balance(t, s, "di"); got != 497 {
		t.Fatalf("balance shown while leased %d, want 497", got)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := m.DebitKey(context.Background(), other, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		a, err := s.StoredAccount(context.Background(), "di")
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Leases) == 0 && a.Balance(time.Now()) == 497 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leases %+v, balance %d", a.Leases, a.Balance(time.Now()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
