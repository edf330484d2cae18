package billing_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
)

func paidInvoice(id, plan, payment string, amount int64, start, end, at time.Time) billing.Event {
	return billing.Event{ID: "evt_" + id, Type: "invoice.paid", Change: billing.InvoicePaid{InvoiceID: id, SubscriptionID: "sub_1",
		Plan: plan, PeriodStart: start, PeriodEnd: end, Payment: payment, Amount: amount, Created: at}}
}

// One period of a subscription is worth its dearest plan's credits, in any
// order of its invoices; an upgrade tops the period up, a downgrade adds
// nothing, the next period grants the plan then current, and a refund takes
// back what its own payment bought.
func TestPeriodGrantIsWorthItsDearestPlan(t *testing.T) {
	c := billing.DefaultCatalog()
	end := t0.AddDate(0, 1, 0)
	basic := paidInvoice("in_1", "Basic", "pi_1", 500, t0, end, t0)
	power := paidInvoice("in_2", "Power", "pi_2", 4350, t0.Add(24*time.Hour), end, t0.Add(24*time.Hour))
	down := paidInvoice("in_3", "Basic", "in_3", 0, t0.Add(48*time.Hour), end, t0.Add(48*time.Hour))
	next := paidInvoice("in_4", "Basic", "pi_4", 500, end, end.AddDate(0, 1, 0), end)
	now := t0.Add(72 * time.Hour)
	orders := [][]billing.Event{
		{basic, power, down}, {power, down, basic}, {down, basic, power}, {down, power, basic, power, down},
	}
	for i, evs := range orders {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			a := billing.NewAccount("u1", "", c.Free(), t0)
			for _, e := range evs {
				if err := a.Apply(e, c, now); err != nil {
					t.Fatal(err)
				}
			}
			if got := a.Balance(now) - 50; got != 100_000 {
				t.Fatalf("the period holds %d subscription credits, want 100,000", got)
			}
			// A full refund of the Basic payment takes back the 1,000 it
			// bought; of the upgrade, the 99,000 it added.
			a.Apply(billing.Event{ID: "r1", Change: billing.PaymentReversed{Payment: "pi_1", Charged: 500, Refunded: 500}}, c, now)
			if got := a.Balance(now) - 50; got != 99_000 {
				t.Fatalf("after refunding Basic: %d, want 99,000", got)
			}
			a.Apply(billing.Event{ID: "r2", Change: billing.PaymentReversed{Payment: "pi_2", Charged: 4350, Refunded: 4350}}, c, now)
			if got := a.Balance(now) - 50; got != 0 {
				t.Fatalf("after refunding the upgrade too: %d, want 0", got)
			}
			if err := a.Apply(next, c, end.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if got := a.Balance(end.Add(time.Hour)); got != 1000 {
				t.Fatalf("next period on Basic: %d credits, want 1,000", got)
			}
		})
	}
}

// permutations calls fn with every order of evs.
func permutations(evs []billing.Event, fn func([]billing.Event)) {
	var rec func(k int)
	rec = func(k int) {
		if k == len(evs) {
			fn(append([]billing.Event(nil), evs...))
			return
		}
		for i := k; i < len(evs); i++ {
			evs[k], evs[i] = evs[i], evs[k]
			rec(k + 1)
			evs[k], evs[i] = evs[i], evs[k]
		}
	}
	rec(0)
}

// A period's tiers and the refunds and disputes of their payments leave the
// same grant, debt and ledger in every one of their 120 orders: a dispute
// of the upgrade takes back what the upgrade added, also when it arrives
// before the cheaper tier it was added to.
func TestPeriodReversalsAreTheSameInEveryOrder(t *testing.T) {
	c := billing.DefaultCatalog()
	end := t0.AddDate(0, 1, 0)
	now := t0.Add(72 * time.Hour)
	evs := []billing.Event{
		paidInvoice("in_1", "Basic", "pi_1", 500, t0, end, t0),
		paidInvoice("in_2", "Power", "pi_2", 4350, t0.Add(24*time.Hour), end, t0.Add(24*time.Hour)),
		paidInvoice("in_3", "Basic", "in_3", 0, t0.Add(48*time.Hour), end, t0.Add(48*time.Hour)),
		{ID: "r1", Change: billing.PaymentReversed{Payment: "pi_1", Charged: 500, Refunded: 185}},
		{ID: "d2", Change: billing.PaymentReversed{Payment: "pi_2", Charged: 4350, Disputed: 4350}},
	}
	type result struct {
		Balance, Debt int64
		Ledger        map[string]string
	}
	var want *result
	n := 0
	permutations(evs, func(order []billing.Event) {
		n++
		a := billing.NewAccount("u1", "", c.Free(), t0)
		got := result{Ledger: map[string]string{}}
		for _, e := range order {
			if err := a.Apply(e, c, now); err != nil {
				t.Fatal(err)
			}
		}
		for _, e := range a.Entries() { // later writes of an entry replace earlier ones, as in the store
			got.Ledger[e.ID] = fmt.Sprintf("%+d %s", e.Credits, e.Note)
		}
		got.Balance, got.Debt = a.Balance(now), a.Debt
		if want == nil {
			want = &got
			// 1,000 bought by Basic, 37% refunded: 370 back; the dispute
			// takes all 99,000 the upgrade added.
			if got.Balance != 50+1000-370 || got.Debt != 0 {
				t.Fatalf("balance %d debt %d, want %d and 0", got.Balance, got.Debt, 50+1000-370)
			}
			return
		}
		if fmt.Sprint(got) != fmt.Sprint(*want) {
			t.Fatalf("order %v:\n got %+v\nwant %+v", ids(order), got, *want)
		}
	})
	if n != 120 {
		t.Fatalf("%d orders, want 120", n)
	}
}

func ids(evs []billing.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID)
	}
	return out
}

// A subscription's credits pay debt first, as every grant's do: a refund
// of spent top-up credits leaves debt, and the next subscription period
// pays it before the account can spend again.
func TestPeriodGrantPaysDebtFirst(t *testing.T) {
	c := billing.DefaultCatalog()
	a := billing.NewAccount("u1", "", c.Free(), t0)
	topUp := billing.Event{ID: "cs", Change: billing.CheckoutCompleted{SessionID: "cs_1", Kind: billing.PriceInstant, Plan: "Basic",
		Payment: "pi_top", Paid: true, Created: t0}}
	if err := a.Apply(topUp, c, t0); err != nil {
		t.Fatal(err)
	}
	if err := a.Debit(1040, t0); err != nil {
		t.Fatal(err)
	}
	a.Apply(billing.Event{ID: "r", Change: billing.PaymentReversed{Payment: "pi_top", Charged: 500, Refunded: 500}}, c, t0)
	if a.Debt != 990 {
		t.Fatalf("debt %d after the refund, want 990", a.Debt)
	}
	end := t0.AddDate(0, 1, 0)
	if err := a.Apply(paidInvoice("in_1", "Basic", "pi_1", 500, t0, end, t0.Add(time.Hour)), c, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if a.Debt != 0 || a.Balance(t0.Add(time.Hour)) != 10 {
		t.Fatalf("after a Basic month: debt %d, balance %d; want 0 and 10", a.Debt, a.Balance(t0.Add(time.Hour)))
	}
}
