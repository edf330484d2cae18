package store_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/emulator"
	"github.com/paymeter/paymeter/store"
	"github.com/paymeter/paymeter/tasks/taskstest"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// newStore returns a Store on a project of its own in the Firestore
// emulator, so tests never see each other's data.
func newStore(t *testing.T) (*store.Store, *firestore.Client) {
	t.Helper()
	emulator.Firestore(t)
	project := fmt.Sprintf("demo-store-%d", time.Now().UnixNano())
	client, err := firestore.NewClient(context.Background(), project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return store.New(client, billing.DefaultCatalog().Free()), client
}

func provision(t *testing.T, s *store.Store, uid string) *billing.Account {
	t.Helper()
	a, _, err := s.Provision(context.Background(), billing.Identity{UID: uid, Email: uid + "@example.com"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newKey(t *testing.T, s *store.Store, uid string) (secret, hash string) {
	t.Helper()
	secret, key, hash, err := billing.NewAPIKey(rand.Reader, uid, "test", t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateKey(context.Background(), hash, key); err != nil {
		t.Fatal(err)
	}
	return secret, hash
}

// Original bug 7: the sign-up raced and a second writer could overwrite the
// first grant with zero credits.
func TestSignUpRaceProvisionsOnce(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	const racers = 5
	var wg sync.WaitGroup
	created := make(chan bool, racers)
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, c, err := s.Provision(ctx, billing.Identity{UID: "racer"}, t0)
			if err != nil {
				t.Error(err)
			}
			created <- c
		}()
	}
	wg.Wait()
	close(created)
	n := 0
	for c := range created {
		if c {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d calls created the account, want 1", n)
	}
	a, err := s.Account(ctx, "racer")
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Balance(t0); got != 50 {
		t.Fatalf("balance after racing sign-ups = %d, want 50", got)
	}
	entries, err := client.Collection("accounts").Doc("racer").Collection("ledger").Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("ledger has %d entries, want the one first grant", len(entries))
	}
}

// Original bug 6: check-then-decrement without a condition let concurrent
// calls overdraw the balance below zero.
func TestConcurrentDebitsNeverOverdraw(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provision(t, s, "hot")
	_, hash := newKey(t, s, "hot")
	if _, err := s.DebitKey(ctx, hash, 47, t0); err != nil { // leaves 3
		t.Fatal(err)
	}
	const callers = 6
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.DebitKey(ctx, hash, 1, t0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, billing.ErrInsufficientCredits):
				refused++
			default:
				t.Errorf("debit: %v", err)
			}
		}()
	}
	wg.Wait()
	a, err := s.Account(ctx, "hot")
	if err != nil {
		t.Fatal(err)
	}
	if ok != 3 || refused != callers-3 || a.Balance(t0) != 0 {
		t.Fatalf("%d debits succeeded, %d refused, balance %d; want 3, %d, 0", ok, refused, a.Balance(t0), callers-3)
	}
	usage, err := s.Usage(ctx, "hot", t0, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(usage) != 1 || usage[0].Credits != 50 {
		t.Fatalf("usage = %+v, want 50 credits today", usage)
	}
}

// Original bug 8: API keys were stored and returned in plain text.
func TestKeysAreStoredHashedOnly(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	provision(t, s, "owner")
	secret, hash := newKey(t, s, "owner")
	docs, err := client.Collection("apiKeys").Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 || docs[0].Ref.ID != hash {
		t.Fatalf("apiKeys holds %d docs, want one under the key's SHA-256", len(docs))
	}
	body := strings.TrimPrefix(secret, billing.KeyPrefix)
	if dump := fmt.Sprint(docs[0].Data()); strings.Contains(dump, body) {
		t.Fatalf("the stored key document contains the secret: %s", dump)
	}
	if _, err := s.DebitKey(ctx, billing.HashKey(secret), 1, t0); err != nil {
		t.Fatalf("debit with the new key: %v", err)
	}
	keys, err := s.Keys(ctx, "owner")
	if err != nil || len(keys) != 1 {
		t.Fatalf("Keys = %v, %v; want the one key", keys, err)
	}
	if err := s.RevokeKey(ctx, "intruder", keys[0].ID); !errors.Is(err, billing.ErrNotFound) {
		t.Fatalf("revoking another user's key: %v, want ErrNotFound", err)
	}
	if err := s.RevokeKey(ctx, "owner", keys[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DebitKey(ctx, hash, 1, t0); !errors.Is(err, billing.ErrInvalidAPIKey) {
		t.Fatalf("debit with a revoked key: %v, want ErrInvalidAPIKey", err)
	}
	if keys, _ := s.Keys(ctx, "owner"); len(keys) != 0 {
		t.Fatalf("a revoked key is still listed: %+v", keys)
	}
}

// A key's lastUsedAt follows its debits, per call and by lease, without a
// write on the key's own document: the account, written anyway, records it.
func TestKeyLastUsedIsRecordedWithTheAccount(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	provision(t, s, "owner")
	_, hash := newKey(t, s, "owner")
	keyDoc := func() *firestore.DocumentSnapshot {
		t.Helper()
		snap, err := client.Collection("apiKeys").Doc(hash).Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	lastUsed := func() time.Time {
		t.Helper()
		keys, err := s.Keys(ctx, "owner")
		if err != nil || len(keys) != 1 {
			t.Fatalf("Keys = %v, %v; want the one key", keys, err)
		}
		return keys[0].LastUsedAt
	}
	if got := lastUsed(); !got.IsZero() {
		t.Fatalf("a new key's lastUsedAt is %v, want never", got)
	}
	before := keyDoc().UpdateTime

	t1 := t0.Add(time.Hour)
	if _, err := s.DebitKey(ctx, hash, 1, t1); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); !got.Equal(t1) {
		t.Fatalf("after a debit at %v, lastUsedAt is %v", t1, got)
	}
	key, err := s.Key(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	t2 := t1.Add(time.Minute)
	if _, err := s.TakeLease(ctx, store.LeaseRequest{UID: "owner", ID: "l1", Owner: "i1", Want: 5, TTL: time.Minute, KeyID: key.ID}, t2); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); !got.Equal(t2) {
		t.Fatalf("after a lease taken at %v, lastUsedAt is %v", t2, got)
	}
	if after := keyDoc().UpdateTime; !after.Equal(before) {
		t.Fatalf("the key's document was written (updated %v, then %v): one write more per debit", before, after)
	}
}

func TestKeyCap(t *testing.T) {
	s, _ := newStore(t)
	provision(t, s, "many")
	for range billing.MaxKeys {
		newKey(t, s, "many")
	}
	_, key, hash, _ := billing.NewAPIKey(rand.Reader, "many", "one too many", t0)
	if err := s.CreateKey(context.Background(), hash, key); !errors.Is(err, billing.ErrTooManyKeys) {
		t.Fatalf("key %d: %v, want ErrTooManyKeys", billing.MaxKeys+1, err)
	}
}

// Concurrent creations by one owner at its last free slot: exactly one
// gets it (the count runs outside the transaction; the owner's lock
// document serialises them).
func TestKeyCapHoldsUnderConcurrentCreations(t *testing.T) {
	s, _ := newStore(t)
	provision(t, s, "race")
	for range billing.MaxKeys - 1 {
		newKey(t, s, "race")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var created, refused int
	for i := range 3 {
		wg.Go(func() {
			_, key, hash, _ := billing.NewAPIKey(rand.Reader, "race", fmt.Sprint("racer ", i), t0)
			err := s.CreateKey(context.Background(), hash, key)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created++
			case errors.Is(err, billing.ErrTooManyKeys):
				refused++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if created != 1 || refused != 2 {
		t.Fatalf("%d created and %d refused at the last free slot, want 1 and 2", created, refused)
	}
}

func TestDebitRefusesWithoutTakingAnything(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provision(t, s, "poor")
	_, hash := newKey(t, s, "poor")
	if _, err := s.DebitKey(ctx, hash, 51, t0); !errors.Is(err, billing.ErrInsufficientCredits) {
		t.Fatalf("debit of 51 from 50: %v", err)
	}
	left, err := s.DebitKey(ctx, hash, 50, t0)
	if err != nil || left != 0 {
		t.Fatalf("debit of 50 from 50 = %d, %v; want 0 left", left, err)
	}
	if _, err := s.DebitKey(ctx, billing.HashKey("pmk_unknown"), 1, t0); !errors.Is(err, billing.ErrInvalidAPIKey) {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestApplyEventOnce(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provision(t, s, "buyer")
	topUp := func(a *billing.Account) error {
		a.AddGrant(billing.Grant{ID: fmt.Sprintf("topup-%d", len(a.Grants)), Source: billing.SourceTopUp, Amount: 1000, Remaining: 1000}, t0, "Top-up")
		return nil
	}
	for i, want := range []bool{true, false, false} {
		applied, err := s.ApplyEvent(ctx, "evt_1", "buyer", topUp)
		if err != nil || applied != want {
			t.Fatalf("delivery %d: applied=%v err=%v, want %v", i+1, applied, err, want)
		}
	}
	a, _ := s.Account(ctx, "buyer")
	if got := a.Balance(t0); got != 1050 {
		t.Fatalf("balance after one event delivered three times = %d, want 1050", got)
	}
	if _, err := s.ApplyEvent(ctx, "evt_2", "nobody", topUp); !errors.Is(err, billing.ErrNotFound) {
		t.Fatalf("event for an unknown account: %v", err)
	}
}

// The usage of the latest month rides the account's writes: a debit writes
// no usage document. When a month begins, the last one moves to its usage
// document; a lease settled after the month turned counts its use on the
// days it recorded, in the earlier month's document. GET /api/usage shows
// the same days throughout.
func TestUsageRidesTheAccountAndMovesOutWhenAMonthBegins(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	provision(t, s, "u")
	_, hash := newKey(t, s, "u")
	usageDoc := func(month string) bool {
		t.Helper()
		_, err := client.Collection("accounts").Doc("u").Collection("usage").Doc(month).Get(ctx)
		if err != nil && status.Code(err) != codes.NotFound {
			t.Fatal(err)
		}
		return err == nil
	}
	days := func(from, to time.Time) []int64 {
		t.Helper()
		u, err := s.Usage(ctx, "u", from, to)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]int64, len(u))
		for i, d := range u {
			out[i] = d.Credits
		}
		return out
	}
	nov26, dec1 := t0, time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

	if _, err := s.DebitKey(ctx, hash, 2, nov26); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeLease(ctx, store.LeaseRequest{UID: "u", ID: "l1", Owner: "i1", Want: 10, TTL: 6 * 24 * time.Hour}, nov26.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if usageDoc("2026-11") {
		t.Fatal("a debit wrote a usage document: one write more per call")
	}
	if got := days(nov26, nov26); !slices.Equal(got, []int64{2}) {
		t.Fatalf("usage on Nov 26 = %v, want [2]", got)
	}
	if _, err := s.DebitKey(ctx, hash, 3, dec1); err != nil {
		t.Fatal(err)
	}
	if !usageDoc("2026-11") || usageDoc("2026-12") {
		t.Fatal("the first debit of December did not move November to its document, or wrote December's")
	}
	// The lease, used on Nov 27, is given back in December.
	nov27, _ := billing.UsageKeys(nov26.Add(24 * time.Hour))
	_, day27 := billing.UsageKeys(nov26.Add(24 * time.Hour))
	use := store.LeaseUse{UID: "u", ID: "l1", Used: 4, Days: map[string]map[string]int64{nov27: {day27: 4}}}
	if _, err := s.ReturnLease(ctx, "u", dec1.Add(time.Hour), use); err != nil {
		t.Fatal(err)
	}
	if got := days(nov26, dec1); !slices.Equal(got, []int64{2, 4, 0, 0, 0, 3}) {
		t.Fatalf("usage Nov 26 to Dec 1 = %v, want [2 4 0 0 0 3]", got)
	}
	a, err := s.Account(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Balance(dec1); got != 50-2-3-4 {
		t.Fatalf("balance %d, want %d", got, 50-2-3-4)
	}
}

func TestOverduePagesThroughEveryAccount(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	for i := range 7 {
		provision(t, s, fmt.Sprintf("u%d", i))
	}
	if _, err := s.UpdateAccount(ctx, "u3", func(a *billing.Account) error { a.SetPlan(billing.PlanBasic, t0); return nil }); err != nil {
		t.Fatal(err)
	}
	var got []string
	cursor := ""
	for {
		page, next, err := s.Overdue(ctx, t0.Add(8*24*time.Hour), 2, cursor)
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range page {
			got = append(got, task.UID)
			if task.Period != 1 {
				t.Errorf("%s: period %d, want 1", task.UID, task.Period)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != 6 {
		t.Fatalf("overdue Free accounts = %v, want the 6 not on a paid plan", got)
	}
	if page, _, _ := s.Overdue(ctx, t0.Add(time.Hour), 10, ""); len(page) != 0 {
		t.Fatalf("accounts not yet due were listed: %v", page)
	}
}

func TestLedgerAndUsage(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	provision(t, s, "reader")
	_, hash := newKey(t, s, "reader")
	for _, day := range []int{0, 0, 2} {
		if _, err := s.DebitKey(ctx, hash, 3, t0.AddDate(0, 0, day)); err != nil {
			t.Fatal(err)
		}
	}
	usage, err := s.Usage(ctx, "reader", t0, t0.AddDate(0, 0, 6))
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{6, 0, 3, 0, 0, 0, 0}
	if len(usage) != len(want) {
		t.Fatalf("usage has %d days, want %d", len(usage), len(want))
	}
	for i, d := range usage {
		if d.Credits != want[i] {
			t.Errorf("%s: %d credits, want %d", d.Date, d.Credits, want[i])
		}
	}
	// A week on, the Free grant has expired: the debit fails and the
	// expiry is not written by a failed debit, but a grant records it.
	if _, err := s.UpdateAccount(ctx, "reader", func(a *billing.Account) error {
		a.GrantFree(1, billing.DefaultCatalog().Free(), t0.Add(billing.Week))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	entries, err := s.Ledger(ctx, "reader", 10)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range entries {
		kinds = append(kinds, fmt.Sprintf("%s%+d", e.Kind, e.Credits))
	}
	if got := strings.Join(kinds, " "); got != "grant+50 expiry-41 grant+50" {
		t.Fatalf("ledger, newest first = %q", got)
	}
}

// The Free chain's scenarios (60 weeks, duplicate and failed deliveries,
// pause and resume, reconcile) on Firestore.
func TestFreeChainOnFirestore(t *testing.T) {
	taskstest.RunChain(t, func(t *testing.T) taskstest.Store {
		s, _ := newStore(t)
		return s
	})
}
