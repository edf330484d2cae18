package billing_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
)

// basicOnce is a one-off Basic purchase: 1,000 credits for £5.00.
func basicOnce(session, payment string, at time.Time, paid bool) billing.Event {
	return billing.Event{ID: "evt_" + session, Type: "checkout.session.completed", Created: at, Change: billing.CheckoutCompleted{
		SessionID: session, Kind: billing.PriceInstant, Plan: "Basic", Payment: payment, Paid: paid, Created: at}}
}

func refund(id, payment string, refunded int64, at time.Time) billing.Event {
	return billing.Event{ID: id, Type: "charge.refunded", Created: at, Change: billing.PaymentReversed{
		ChargeID: "ch_" + payment, Payment: payment, Charged: 500, Refunded: refunded, Created: at}}
}

func mustApply(t *testing.T, a *billing.Account, e billing.Event, now time.Time) {
	t.Helper()
	if err := a.Apply(e, billing.DefaultCatalog(), now); err != nil {
		t.Fatalf("apply %s: %v", e.ID, err)
	}
}

// ledger is the account's ledger as a store keeps it: one entry per id,
// the last written.
func ledger(a *billing.Account) map[string]billing.Entry {
	out := map[string]billing.Entry{}
	for _, e := range a.Entries() {
		out[e.ID] = e
	}
	return out
}

// TestRefundOfSpentCreditsLeavesDebt is the case: buy Basic once
// (Free 50 + Basic 1,000 = 1,050), spend 1,040, refund: debt 990, credits
// 0, calls refused (debited or leased); the next Free grant pays 50 of it
// and leaves debt 940, and calls are still refused.
func TestRefundOfSpentCreditsLeavesDebt(t *testing.T) {
	a := billing.NewAccount("u1", "u1@example.com", free, at0)
	mustApply(t, a, basicOnce("cs_1", "pi_1", at0, true), at0)
	if got := a.Balance(at0); got != 1050 {
		t.Fatalf("after buying Basic once: %d credits, want 1,050", got)
	}
	if err := a.Debit(1040, at0); err != nil {
		t.Fatal(err)
	}
	later := at0.Add(time.Hour)
	mustApply(t, a, refund("evt_r", "pi_1", 500, later), later)
	if a.Debt != 990 || a.Balance(later) != 0 {
		t.Fatalf("after the refund: debt %d, credits %d; want 990 and 0", a.Debt, a.Balance(later))
	}
	if err := a.Debit(1, later); !errors.Is(err, billing.ErrInsufficientCredits) {
		t.Errorf("a call in debt: %v, want insufficient credits", err)
	}
	if _, err := a.TakeLease("l1", "i1", 10, time.Minute, later); !errors.Is(err, billing.ErrInsufficientCredits) {
		t.Errorf("a lease in debt: %v, want insufficient credits", err)
	}
	l := ledger(a)
	if e := l["clawback-cs_1"]; e.Kind != billing.EntryClawback || e.Credits != -10 {
		t.Errorf("clawback entry %+v, want the 10 left taken back", e)
	}
	if e := l["debt-cs_1"]; e.Kind != billing.EntryDebt || e.Credits != -990 || e.Note == "" {
		t.Errorf("debt entry %+v, want -990 with a note", e)
	}

	week := at0.Add(billing.Week)
	if !a.GrantFree(1, free, week) {
		t.Fatal("the next Free grant was not applied")
	}
	if a.Debt != 940 || a.Balance(week) != 0 {
		t.Fatalf("after the next Free grant: debt %d, credits %d; want 940 and 0", a.Debt, a.Balance(week))
	}
	if e := ledger(a)["debtpaid-free-1"]; e.Kind != billing.EntryDebtPaid || e.Credits != -50 {
		t.Errorf("debt payment entry %+v, want the Free 50 paid towards the debt", e)
	}
	if err := a.Debit(1, week); !errors.Is(err, billing.ErrInsufficientCredits) {
		t.Errorf("a call still in debt: %v", err)
	}
	// A purchase pays the rest, and what is left of it can be spent.
	mustApply(t, a, basicOnce("cs_2", "pi_2", week, true), week)
	if a.Debt != 0 || a.Balance(week) != 60 {
		t.Fatalf("after buying Basic again: debt %d, credits %d; want 0 and 60", a.Debt, a.Balance(week))
	}
	if err := a.Debit(60, week); err != nil {
		t.Errorf("out of debt, a call was refused: %v", err)
	}
}

// TestDebtIsTheSameInAnyOrder: a spent purchase refunded in two steps and a
// second purchase, each delivered up to three times in any order, leave the
// same debt, credits, grants and ledger.
func TestDebtIsTheSameInAnyOrder(t *testing.T) {
	at := at0.Add(time.Hour)
	now := at0.Add(2 * time.Hour)
	evs := []billing.Event{
		refund("evt_r1", "pi_1", 250, at),
		refund("evt_r2", "pi_1", 500, at.Add(time.Minute)),
		basicOnce("cs_2", "pi_2", at.Add(2*time.Minute), true),
	}
	type outcome struct {
		Debt, Credits int64
		Grants        []string
		Ledger        []string
	}
	play := func(order []billing.Event) outcome {
		a := billing.NewAccount("u1", "", free, at0)
		mustApply(t, a, basicOnce("cs_1", "pi_1", at0, true), at0)
		if err := a.Debit(1040, at0); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range order {
			if !seen[e.ID] {
				seen[e.ID] = true
				mustApply(t, a, e, now)
			}
		}
		o := outcome{Debt: a.Debt, Credits: a.Balance(now)}
		for _, g := range a.Grants {
			o.Grants = append(o.Grants, fmt.Sprintf("%s %d/%d", g.ID, g.Remaining, g.Amount))
		}
		for _, e := range ledger(a) {
			line := fmt.Sprintf("%s %+d", e.ID, e.Credits)
			if e.Kind != billing.EntryClawback { // a clawback's note names the refund that took the most
				line += " " + e.Note
			}
			o.Ledger = append(o.Ledger, line)
		}
		sort.Strings(o.Grants)
		sort.Strings(o.Ledger)
		return o
	}
	want := play(evs)
	if want.Debt != 0 || want.Credits != 10 {
		t.Fatalf("in order: debt %d, credits %d; want the second purchase to pay the 990 owed, leaving 10", want.Debt, want.Credits)
	}
	var thrice []billing.Event
	for _, e := range evs {
		thrice = append(thrice, e, e, e)
	}
	rng := rand.New(rand.NewPCG(10, 5))
	for i := range 200 {
		rng.Shuffle(len(thrice), func(i, j int) { thrice[i], thrice[j] = thrice[j], thrice[i] })
		if got := play(thrice); !reflect.DeepEqual(got, want) {
			t.Fatalf("order %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

// TestRefundWhileLeasedOwesWhatTheLeaseSpent: a refund that arrives while
// the grant's credits are out on a lease takes back what comes back when
// the lease is settled, and owes what the lease spent; until then the
// account owes nothing it may not still get back.
func TestRefundWhileLeasedOwesWhatTheLeaseSpent(t *testing.T) {
	a := billing.NewAccount("u1", "", free, at0)
	mustApply(t, a, basicOnce("cs_1", "pi_1", at0, true), at0)
	if _, err := a.TakeLease("l1", "i1", 1050, time.Minute, at0); err != nil {
		t.Fatal(err)
	}
	mustApply(t, a, refund("evt_r", "pi_1", 500, at0), at0)
	if a.Debt != 0 {
		t.Fatalf("debt %d while the credits are out on the lease", a.Debt)
	}
	if _, err := a.SettleLease("l1", 1040, at0); err != nil { // the Free 50 and 990 of Basic spent
		t.Fatal(err)
	}
	if a.Debt != 990 || a.Balance(at0) != 0 {
		t.Fatalf("after settling: debt %d, credits %d; want 990 and 0", a.Debt, a.Balance(at0))
	}
	if _, err := a.TakeLease("l2", "i1", 10, time.Minute, at0); !errors.Is(err, billing.ErrInsufficientCredits) {
		t.Errorf("a lease in debt: %v", err)
	}
}

// TestDelayedPurchaseGrantsOnceWhenPaid: a one-off purchase paid by bank
// debit completes unpaid, then succeeds or fails later. Success grants the
// credits once, in any order and however often the events arrive; failure
// grants nothing and leaves a note in the ledger.
func TestDelayedPurchaseGrantsOnceWhenPaid(t *testing.T) {
	at := at0.Add(time.Hour)
	now := at0.Add(3 * 24 * time.Hour)
	completed := basicOnce("cs_1", "pi_1", at, false)
	succeeded := basicOnce("cs_1", "pi_1", at.Add(48*time.Hour), true)
	succeeded.ID, succeeded.Type = "evt_ok", "checkout.session.async_payment_succeeded"
	failed := billing.Event{ID: "evt_fail", Type: "checkout.session.async_payment_failed", Created: at.Add(48 * time.Hour),
		Change: billing.CheckoutPaymentFailed{SessionID: "cs_1", Kind: billing.PriceInstant, Plan: "Basic", Created: at.Add(48 * time.Hour)}}

	a := billing.NewAccount("u1", "", free, at0)
	mustApply(t, a, completed, at)
	if got := a.Balance(at); got != 50 {
		t.Fatalf("completed but unpaid: %d credits, want only the Free 50", got)
	}
	for name, order := range map[string][]billing.Event{
		"in order":          {completed, succeeded},
		"succeeded first":   {succeeded, completed},
		"each three times":  {completed, succeeded, completed, succeeded, succeeded, completed},
		"succeeded, resent": {succeeded, succeeded, completed, succeeded},
	} {
		a := billing.NewAccount("u1", "", free, at0)
		for _, e := range order { // no event-id dedup: the grant itself is keyed by the session
			mustApply(t, a, e, now)
		}
		if got := a.Balance(now); got != 1050 {
			t.Errorf("%s: %d credits, want 1,050 (Basic granted once)", name, got)
		}
	}

	for name, order := range map[string][]billing.Event{
		"in order":     {completed, failed},
		"failed first": {failed, completed, failed},
	} {
		a := billing.NewAccount("u1", "", free, at0)
		for _, e := range order {
			mustApply(t, a, e, now)
		}
		if got := a.Balance(now); got != 50 {
			t.Errorf("%s: %d credits after a failed payment, want only the Free 50", name, got)
		}
		e, ok := ledger(a)["payment-failed-cs_1"]
		if !ok || e.Kind != billing.EntryNote || e.Credits != 0 || e.Note == "" {
			t.Errorf("%s: ledger note %+v", name, e)
		}
	}
}
