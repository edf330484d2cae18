package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// use is a lease's use, all of it on now's day.
func use(uid, id string, used int64, now time.Time) store.LeaseUse {
	month, day := billing.UsageKeys(now)
	return store.LeaseUse{UID: uid, ID: id, Used: used, Days: map[string]map[string]int64{month: {day: used}}}
}

func usedOn(t *testing.T, s *store.Store, uid string, now time.Time) int64 {
	t.Helper()
	days, err := s.Usage(context.Background(), uid, now, now)
	if err != nil || len(days) != 1 {
		t.Fatalf("usage %+v: %v", days, err)
	}
	return days[0].Credits
}

// A lease's use is recorded in its holder's journal: the balance and the
// usage shown count it at once, and its return settles it with it, once.
func TestLeaseSettlesWithTheUseItRecorded(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provisionNow(t, s, "ada")
	topUp(t, s, "ada", 1000) // 1,050 with the Free grant
	now := time.Now()
	tk, err := s.TakeLease(ctx, store.LeaseRequest{UID: "ada", ID: "i1-1", Owner: "i1", Want: 100, TTL: time.Minute}, now)
	if err != nil || tk.Lease.Amount != 100 || tk.Balance != 950 || tk.Leased != 0 {
		t.Fatalf("take %+v: %v", tk, err)
	}
	at, err := s.WriteJournal(ctx, store.JournalWrite{Owner: "i1", Seq: 1, Uses: []store.LeaseUse{use("ada", "i1-1", 10, now)}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteJournal(ctx, store.JournalWrite{Owner: "i1", Seq: 2, After: at, Uses: []store.LeaseUse{use("ada", "i1-1", 30, now)}, Now: now}); err != nil {
		t.Fatal(err)
	}
	if got := balance(t, s, "ada", now); got != 1020 {
		t.Fatalf("balance shown while leased = %d, want 1020 (1,050 minus the 30 recorded)", got)
	}
	if used := usedOn(t, s, "ada", now); used != 30 {
		t.Fatalf("usage shown while leased = %d", used)
	}
	for range 2 { // returned twice: the second changes nothing
		if bal, err := s.ReturnLease(ctx, "ada", now, use("ada", "i1-1", 30, now)); err != nil || bal != 1020 {
			t.Fatalf("balance after return %d: %v", bal, err)
		}
	}
	if used := usedOn(t, s, "ada", now); used != 30 {
		t.Fatalf("usage after return = %d", used)
	}
	if a, err := s.StoredAccount(ctx, "ada"); err != nil || len(a.Leases) != 0 || a.Balance(now) != 1020 {
		t.Fatalf("stored account %+v: %v", a, err)
	}
}

// A crashed instance never returns its lease: the next account transaction
// (here a per-call debit) settles it with exactly the use its journal
// records, and fences the journal, so that a late write fails.
func TestExpiredLeaseIsSettledFromTheJournalAndFenced(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provisionNow(t, s, "bob")
	_, hash := newKey(t, s, "bob")
	past := time.Now().Add(-time.Hour) // the lease expired long ago
	tk, err := s.TakeLease(ctx, store.LeaseRequest{UID: "bob", ID: "dead-1", Owner: "dead", Want: 40, TTL: time.Second}, past)
	if err != nil {
		t.Fatal(err)
	}
	at, err := s.WriteJournal(ctx, store.JournalWrite{Owner: "dead", Seq: 1, Uses: []store.LeaseUse{use("bob", tk.Lease.ID, 7, past)}, Now: past})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rem, err := s.DebitKey(ctx, hash, 1, now)
	if err != nil || rem != 50-7-1 {
		t.Fatalf("remaining %d: %v", rem, err)
	}
	if a, err := s.StoredAccount(ctx, "bob"); err != nil || len(a.Leases) != 0 {
		t.Fatalf("leases left %+v: %v", a.Leases, err)
	}
	_, err = s.WriteJournal(ctx, store.JournalWrite{Owner: "dead", Seq: 2, After: at, Uses: []store.LeaseUse{use("bob", tk.Lease.ID, 8, now)}, Now: now})
	if !errors.Is(err, store.ErrJournalMoved) {
		t.Fatalf("a write after the settlement: %v", err)
	}
	j, err := s.ReadJournal(ctx, "dead")
	if err != nil || !j.Gone[tk.Lease.ID] || j.Seq != 1 {
		t.Fatalf("journal %+v: %v", j, err)
	}
	days, err := s.Usage(ctx, "bob", past, now)
	var got int64
	for _, d := range days {
		got += d.Credits
	}
	if err != nil || got != 8 {
		t.Fatalf("usage %d, want 8: %v", got, err)
	}
}

// An instance that keeps writing its journal keeps its leases past their
// expiry with no write on their accounts (each write renews them all), so
// other transactions leave them alone. Once its writes have stopped for a
// lease lifetime, the next transaction settles them from the journal and
// fences it. A lease its holder never listed (a lease transaction that
// committed unseen) is not renewed: it comes back at its expiry.
func TestLeaseRenewedByItsHoldersJournalWrites(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provisionNow(t, s, "cy")
	topUp(t, s, "cy", 1000) // 1,050
	_, hash := newKey(t, s, "cy")
	taken := time.Now().Add(-time.Hour) // both leases are long past their expiry
	for _, id := range []string{"live-1", "live-2"} {
		if _, err := s.TakeLease(ctx, store.LeaseRequest{UID: "cy", ID: id, Owner: "live", Want: 40, TTL: time.Second}, taken); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	at, err := s.WriteJournal(ctx, store.JournalWrite{Owner: "live", Seq: 1, Uses: []store.LeaseUse{use("cy", "live-1", 7, now)},
		Now: now, AliveUntil: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DebitKey(ctx, hash, 1, now); err != nil {
		t.Fatal(err)
	}
	a, err := s.StoredAccount(ctx, "cy")
	if err != nil || len(a.Leases) != 1 || a.Leases[0].ID != "live-1" {
		t.Fatalf("leases after a transaction while the holder writes: %+v (%v); want live-1 only", a.Leases, err)
	}
	if got := balance(t, s, "cy", now); got != 1050-7-1 {
		t.Fatalf("balance shown %d, want %d", got, 1050-7-1)
	}
	// Settling live-2 fenced the journal: the holder's next write fails and
	// it reads the journal again.
	if _, err := s.WriteJournal(ctx, store.JournalWrite{Owner: "live", Seq: 2, After: at, Now: now, AliveUntil: now}); !errors.Is(err, store.ErrJournalMoved) {
		t.Fatalf("a write after live-2 was settled: %v", err)
	}
	j, err := s.ReadJournal(ctx, "live")
	if err != nil || !j.Gone["live-2"] || j.Gone["live-1"] {
		t.Fatalf("journal %+v: %v", j, err)
	}
	// The holder's last write: it promises nothing beyond now.
	at, err = s.WriteJournal(ctx, store.JournalWrite{Owner: "live", Seq: 2, After: j.Updated, Uses: []store.LeaseUse{use("cy", "live-1", 9, now)},
		Now: now, AliveUntil: now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DebitKey(ctx, hash, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	if a, err := s.StoredAccount(ctx, "cy"); err != nil || len(a.Leases) != 0 {
		t.Fatalf("leases after the holder went silent: %+v (%v)", a.Leases, err)
	}
	if got := balance(t, s, "cy", time.Now()); got != 1050-9-2 {
		t.Fatalf("balance %d, want %d", got, 1050-9-2)
	}
	_, err = s.WriteJournal(ctx, store.JournalWrite{Owner: "live", Seq: 3, After: at, Uses: []store.LeaseUse{use("cy", "live-1", 10, now)},
		Now: now, AliveUntil: now.Add(time.Minute)})
	if !errors.Is(err, store.ErrJournalMoved) {
		t.Fatalf("a write after the settlement: %v", err)
	}
}

// An account at the end of its credits is not refused on one instance
// while they sit on another's idle lease: a lease transaction that is short
// takes back the leases of other live instances unused for 5 s, with the
// use their journals record, and fences them. A lease in use stays.
func TestShortLeaseTransactionReclaimsIdleLeases(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provisionNow(t, s, "dot") // 50 credits
	now := time.Now()
	for _, id := range []string{"idle-1", "busy-1"} {
		if _, err := s.TakeLease(ctx, store.LeaseRequest{UID: "dot", ID: id, Owner: strings.TrimSuffix(id, "-1"), Want: 25, TTL: time.Minute}, now.Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	idle := use("dot", "idle-1", 10, now)
	idle.LastUse = now.Add(-30 * time.Second)
	at, err := s.WriteJournal(ctx, store.JournalWrite{Owner: "idle", Seq: 1, Uses: []store.LeaseUse{idle}, Now: now, AliveUntil: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	busy := use("dot", "busy-1", 5, now)
	busy.LastUse = now
	if _, err := s.WriteJournal(ctx, store.JournalWrite{Owner: "busy", Seq: 1, Uses: []store.LeaseUse{busy}, Now: now, AliveUntil: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	tk, err := s.TakeLease(ctx, store.LeaseRequest{UID: "dot", ID: "short-1", Owner: "short", Want: 100, TTL: time.Minute}, now)
	if err != nil || tk.Lease.Amount != 15 {
		t.Fatalf("take when short: %+v, %v; want the 15 left on the idle lease", tk, err)
	}
	a, err := s.StoredAccount(ctx, "dot")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range a.Leases {
		ids = append(ids, l.ID)
	}
	if slices.Sort(ids); !slices.Equal(ids, []string{"busy-1", "short-1"}) {
		t.Fatalf("leases out %v, want busy-1 and short-1", ids)
	}
	if _, err := s.WriteJournal(ctx, store.JournalWrite{Owner: "idle", Seq: 2, After: at, Uses: []store.LeaseUse{use("dot", "idle-1", 11, now)}, Now: now}); !errors.Is(err, store.ErrJournalMoved) {
		t.Fatalf("the idle holder's next write: %v, want it fenced", err)
	}
	if used := usedOn(t, s, "dot", now); used != 15 {
		t.Fatalf("usage %d, want 15 (10 settled, 5 on the busy lease)", used)
	}
}

// An instance that died before its first write has no journal: settling
// its lease creates the fence, so a first write landing late fails.
func TestExpiredLeaseWithoutJournalIsFenced(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provisionNow(t, s, "bea")
	past := time.Now().Add(-time.Hour)
	tk, err := s.TakeLease(ctx, store.LeaseRequest{UID: "bea", ID: "frozen-1", Owner: "frozen", Want: 10, TTL: time.Second}, past)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateAccount(ctx, "bea", func(*billing.Account) error { return nil }); err != nil {
		t.Fatal(err)
	}
	_, err = s.WriteJournal(ctx, store.JournalWrite{Owner: "frozen", Seq: 1, Uses: []store.LeaseUse{use("bea", tk.Lease.ID, 3, past)}, Now: past})
	if !errors.Is(err, store.ErrJournalMoved) {
		t.Fatalf("a first write after the settlement: %v", err)
	}
	if got := balance(t, s, "bea", time.Now()); got != 50 {
		t.Fatalf("balance %d", got)
	}
}

func TestTakeLeaseAtZeroSettlesAndAnswersInsufficient(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provisionNow(t, s, "cy")
	past := time.Now().Add(-time.Hour)
	tk, err := s.TakeLease(ctx, store.LeaseRequest{UID: "cy", ID: "dead-1", Owner: "dead", Want: 1000, TTL: time.Second}, past)
	if err != nil || tk.Lease.Amount != 50 {
		t.Fatalf("lease %+v: %v", tk, err)
	}
	if _, err := s.WriteJournal(ctx, store.JournalWrite{Owner: "dead", Seq: 1, Uses: []store.LeaseUse{use("cy", tk.Lease.ID, 50, past)}, Now: past}); err != nil {
		t.Fatal(err)
	}
	_, err = s.TakeLease(ctx, store.LeaseRequest{UID: "cy", ID: "i2-1", Owner: "i2", Want: 10, TTL: time.Minute}, time.Now())
	if !errors.Is(err, billing.ErrInsufficientCredits) {
		t.Fatalf("err = %v", err)
	}
	a, _ := s.StoredAccount(ctx, "cy")
	if len(a.Leases) != 0 || a.Balance(time.Now()) != 0 {
		t.Fatalf("account %+v", a)
	}
}

// A journal write racing the settlement of its expired lease is either
// counted by the settlement or refused: never recorded after the
// settlement read the use.
func TestJournalWriteRacingSettlementIsCountedOrRefused(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provisionNow(t, s, "eve")
	topUp(t, s, "eve", 10_000)
	want := balance(t, s, "eve", time.Now())
	var counted, refused int
	defer func() { t.Logf("writes counted by the settlement: %d, refused: %d", counted, refused) }()
	for i := range 10 {
		owner := fmt.Sprintf("race%d", i)
		past := time.Now().Add(-time.Minute)
		tk, err := s.TakeLease(ctx, store.LeaseRequest{UID: "eve", ID: owner + "-1", Owner: owner, Want: 100, TTL: time.Second}, past)
		if err != nil {
			t.Fatal(err)
		}
		at, err := s.WriteJournal(ctx, store.JournalWrite{Owner: owner, Seq: 1, Uses: []store.LeaseUse{use("eve", tk.Lease.ID, 10, past)}, Now: past})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var recErr, setErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, recErr = s.WriteJournal(ctx, store.JournalWrite{Owner: owner, Seq: 2, After: at, Uses: []store.LeaseUse{use("eve", tk.Lease.ID, 25, past)}, Now: past})
		}()
		go func() {
			defer wg.Done()
			_, setErr = s.UpdateAccount(ctx, "eve", func(*billing.Account) error { return nil })
		}()
		wg.Wait()
		if setErr != nil {
			t.Fatal(setErr)
		}
		switch {
		case recErr == nil:
			want -= 25
			counted++
		case errors.Is(recErr, store.ErrJournalMoved):
			want -= 10
			refused++
		default:
			t.Fatal(recErr)
		}
		if got := balance(t, s, "eve", time.Now()); got != want {
			t.Fatalf("round %d: balance %d, want %d (write: %v)", i, got, want, recErr)
		}
	}
}

// One flush is one document write, whatever the number of accounts in it.
func TestJournalIsOneWriteForManyAccounts(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	now := time.Now()
	var uses []store.LeaseUse
	uids := []string{"fay", "gus", "hal", "ivy"}
	for _, uid := range uids {
		provisionNow(t, s, uid)
		tk, err := s.TakeLease(ctx, store.LeaseRequest{UID: uid, ID: uid + "-1", Owner: "many", Want: 20, TTL: time.Minute}, now)
		if err != nil {
			t.Fatal(err)
		}
		uses = append(uses, use(uid, tk.Lease.ID, 5, now))
	}
	if _, err := s.WriteJournal(ctx, store.JournalWrite{Owner: "many", Seq: 1, Uses: uses, Now: now}); err != nil {
		t.Fatal(err)
	}
	for _, uid := range uids {
		if got := balance(t, s, uid, now); got != 45 {
			t.Fatalf("%s's balance %d", uid, got)
		}
		if _, err := s.ReturnLease(ctx, uid, now, use(uid, uid+"-1", 5, now)); err != nil {
			t.Fatal(err)
		}
		if used := usedOn(t, s, uid, now); used != 5 {
			t.Fatalf("%s's usage %d", uid, used)
		}
	}
}
