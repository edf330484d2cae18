package billing_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
)

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

const month = 30 * 24 * time.Hour

// lifecycle is one subscription's events as the provider sends them:
// subscribe to Basic, renew three times, upgrade to Power in the portal, a
// failed payment, then the subscription ends.
func lifecycle() []billing.Event {
	var evs []billing.Event
	add := func(at time.Time, typ string, ch any) {
		evs = append(evs, billing.Event{ID: fmt.Sprintf("evt_%02d", len(evs)), Type: typ, Created: at, CustomerID: "cus_1", Change: ch})
	}
	add(t0, "checkout.session.completed", billing.CheckoutCompleted{SessionID: "cs_1", Kind: billing.PriceMonthly, Plan: "Basic", SubscriptionID: "sub_1", Paid: true, Created: t0})
	for i := range 4 {
		start := t0.Add(time.Duration(i) * month)
		add(start, "invoice.paid", billing.InvoicePaid{InvoiceID: fmt.Sprintf("in_%d", i), SubscriptionID: "sub_1", Plan: "Basic",
			PeriodStart: start, PeriodEnd: start.Add(month), Payment: fmt.Sprintf("pi_%d", i), Amount: 500, Created: start})
	}
	up := t0.Add(3*month + 10*24*time.Hour)
	add(up, "customer.subscription.updated", billing.SubscriptionChanged{SubscriptionID: "sub_1", Plan: "Power", Status: billing.StatusActive, CurrentPeriodEnd: up.Add(month), Created: up})
	add(up, "invoice.paid", billing.InvoicePaid{InvoiceID: "in_up", SubscriptionID: "sub_1", Plan: "Power", PeriodStart: up, PeriodEnd: up.Add(month), Payment: "pi_up", Amount: 5000, Created: up})
	fail := up.Add(month)
	add(fail, "invoice.payment_failed", billing.InvoiceFailed{InvoiceID: "in_fail", SubscriptionID: "sub_1", Plan: "Power", PeriodEnd: fail.Add(month), Created: fail})
	end := fail.Add(2 * 24 * time.Hour)
	add(end, "customer.subscription.deleted", billing.SubscriptionChanged{SubscriptionID: "sub_1", Plan: "Power", Status: billing.StatusCanceled, CurrentPeriodEnd: fail.Add(month), Created: end})
	return evs
}

// topUps is a one-off purchase refunded in full, and another disputed.
func topUps() []billing.Event {
	at := t0.Add(24 * time.Hour)
	return []billing.Event{
		{ID: "evt_t1", Created: at, Change: billing.CheckoutCompleted{SessionID: "cs_t1", Kind: billing.PriceInstant, Plan: "Basic", Payment: "pi_t1", Paid: true, Created: at}},
		{ID: "evt_t2", Created: at.Add(time.Hour), Change: billing.PaymentReversed{ChargeID: "ch_t1", Payment: "pi_t1", Charged: 500, Refunded: 500, Created: at.Add(time.Hour)}},
		{ID: "evt_t3", Created: at.Add(2 * time.Hour), Change: billing.CheckoutCompleted{SessionID: "cs_t2", Kind: billing.PriceInstant, Plan: "Power", Payment: "pi_t2", Paid: true, Created: at.Add(2 * time.Hour)}},
		{ID: "evt_t4", Created: at.Add(3 * time.Hour), Change: billing.PaymentReversed{ChargeID: "ch_t2", Payment: "pi_t2", Charged: 5000, Disputed: 5000, Created: at.Add(3 * time.Hour)}},
	}
}

// state is what a user can see of an account: comparable across runs.
type state struct {
	Plan         string
	Subscription billing.Subscription
	Credits      int64
	Grants       []billing.Grant
	NextGrantAt  time.Time
	Ledger       []string
}

// run applies evs to a fresh account at now, each delivery once, and
// returns what it shows.
func run(t *testing.T, evs []billing.Event, now time.Time) state {
	t.Helper()
	c := billing.DefaultCatalog()
	a := billing.NewAccount("u1", "u1@example.com", c.Free(), t0.Add(-time.Hour))
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[e.ID] { // the store records event ids: a redelivery runs nothing
			continue
		}
		seen[e.ID] = true
		if err := a.Apply(e, c, now); err != nil {
			t.Fatalf("apply %s: %v", e.ID, err)
		}
	}
	s := state{Plan: a.Plan, Credits: a.Balance(now), NextGrantAt: a.NextGrantAt, Grants: a.Grants}
	if a.Subscription != nil {
		s.Subscription = *a.Subscription
	}
	sort.Slice(s.Grants, func(i, j int) bool { return s.Grants[i].ID < s.Grants[j].ID })
	ids := map[string]bool{}
	for _, e := range a.Entries() {
		ids[fmt.Sprintf("%s %d %s", e.ID, e.Credits, e.Note)] = true
	}
	for id := range ids {
		s.Ledger = append(s.Ledger, id)
	}
	sort.Strings(s.Ledger)
	return s
}

func TestEventsConvergeInAnyOrder(t *testing.T) {
	now := t0.Add(6 * month)
	for name, evs := range map[string][]billing.Event{"subscription": lifecycle(), "top-ups": topUps()} {
		t.Run(name, func(t *testing.T) {
			want := run(t, evs, now)
			var thrice []billing.Event
			for _, e := range evs {
				thrice = append(thrice, e, e, e)
			}
			if got := run(t, thrice, now); !reflect.DeepEqual(got, want) {
				t.Fatalf("each event three times:\n got %+v\nwant %+v", got, want)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range 200 {
				shuffled := append([]billing.Event(nil), thrice...)
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				if got := run(t, shuffled, now); !reflect.DeepEqual(got, want) {
					t.Fatalf("shuffle %d:\n got %+v\nwant %+v", i, got, want)
				}
			}
		})
	}
}

func TestSubscriptionLifecycleState(t *testing.T) {
	evs := lifecycle()
	c := billing.DefaultCatalog()
	a := billing.NewAccount("u1", "", c.Free(), t0.Add(-time.Hour))
	steps := []struct {
		plan, status string
		credits      int64
	}{
		{"Basic", "active", 50},     // checkout: following sub_1; Free week still live
		{"Basic", "active", 1050},   // first invoice
		{"Basic", "active", 1000},   // renewal 1 (the first grant has expired)
		{"Basic", "active", 1000},   // renewal 2
		{"Basic", "active", 1000},   // renewal 3
		{"Power", "active", 1000},   // portal upgrade: state only
		{"Power", "active", 101000}, // the upgrade's invoice
		{"Power", "past_due", 0},    // failed renewal: no grant, the old grants expired
		{"Free", "canceled", 0},     // ended: back to Free, no grant now
	}
	for i, e := range evs {
		now := e.Created.Add(time.Minute)
		if err := a.Apply(e, c, now); err != nil {
			t.Fatal(err)
		}
		st := steps[i]
		if a.Plan != st.plan || a.Subscription.Status != st.status || a.Balance(now) != st.credits {
			t.Errorf("after %s: plan %s status %s credits %d, want %s %s %d", e.Type, a.Plan, a.Subscription.Status, a.Balance(now), st.plan, st.status, st.credits)
		}
	}
	if next, ok := a.NextGrant(); !ok || !next.At.After(evs[len(evs)-1].Created) {
		t.Errorf("Free chain not resumed after the end: %+v %v", next, ok)
	}
}

func TestLateEventsNeverBringBackOlderState(t *testing.T) {
	evs := lifecycle()
	c := billing.DefaultCatalog()
	a := billing.NewAccount("u1", "", c.Free(), t0)
	now := t0.Add(6 * month)
	end := evs[len(evs)-1]
	if err := a.Apply(end, c, now); err != nil {
		t.Fatal(err)
	}
	for _, e := range evs[:len(evs)-1] {
		if err := a.Apply(e, c, now); err != nil {
			t.Fatal(err)
		}
		if a.Plan != billing.PlanFree || a.Subscription.Status != billing.StatusCanceled {
			t.Fatalf("late %s brought back plan %s status %s", e.Type, a.Plan, a.Subscription.Status)
		}
	}
	// Late invoices leave a line in the ledger (no credits: their periods are over).
	if len(a.Grants) == 0 && len(a.Entries()) < 6 {
		t.Errorf("late invoices left no trace in the ledger: %d entries", len(a.Entries()))
	}
}

func TestSameSecondSnapshotsTieBreakByLifecycle(t *testing.T) {
	c := billing.DefaultCatalog()
	at := t0
	paid := billing.Event{ID: "e1", Change: billing.InvoicePaid{InvoiceID: "in_1", SubscriptionID: "sub_1", Plan: "Basic", PeriodStart: at, PeriodEnd: at.Add(month), Created: at}}
	deleted := billing.Event{ID: "e2", Change: billing.SubscriptionChanged{SubscriptionID: "sub_1", Plan: "Basic", Status: billing.StatusCanceled, Created: at}}
	checkout := billing.Event{ID: "e3", Change: billing.CheckoutCompleted{SessionID: "cs_1", Kind: billing.PriceMonthly, Plan: "Basic", SubscriptionID: "sub_1", Paid: true, Created: at}}
	for _, order := range [][]billing.Event{{paid, checkout}, {checkout, paid}} {
		a := billing.NewAccount("u1", "", c.Free(), t0)
		for _, e := range order {
			_ = a.Apply(e, c, at)
		}
		if !a.Subscription.CurrentPeriodEnd.Equal(at.Add(month)) {
			t.Errorf("checkout and invoice of the same second: period end %v depends on order", a.Subscription.CurrentPeriodEnd)
		}
	}
	for _, order := range [][]billing.Event{{paid, deleted}, {deleted, paid}} {
		a := billing.NewAccount("u1", "", c.Free(), t0)
		for _, e := range order {
			_ = a.Apply(e, c, at)
		}
		if a.Plan != billing.PlanFree || a.Subscription.Status != billing.StatusCanceled {
			t.Errorf("invoice and end of the same second: plan %s status %s", a.Plan, a.Subscription.Status)
		}
	}
}

func TestCancelSubscriptionGrantsNothingHoweverOften(t *testing.T) {
	c := billing.DefaultCatalog()
	a := billing.NewAccount("u1", "", c.Free(), t0)
	for _, e := range lifecycle()[:2] {
		_ = a.Apply(e, c, t0)
	}
	now := t0.Add(10 * 24 * time.Hour)
	before := a.Balance(now)
	var next billing.GrantTask
	for i := range 5 {
		a.CancelSubscription(now)
		if a.Plan != billing.PlanFree || a.Subscription.Status != billing.StatusCanceled {
			t.Fatalf("call %d: plan %s status %s", i, a.Plan, a.Subscription.Status)
		}
		if got := a.Balance(now); got != before {
			t.Fatalf("call %d: credits %d, want %d (cancel grants nothing)", i, got, before)
		}
		n, ok := a.NextGrant()
		if !ok || (i > 0 && n != next) {
			t.Fatalf("call %d: next grant %+v %v, want the same one task %+v", i, n, ok, next)
		}
		next = n
	}
	if !next.At.After(now) {
		t.Errorf("next Free grant %v is not after the cancel", next.At)
	}
	// The provider's own deletion event, a second later, changes nothing more.
	_ = a.Apply(billing.Event{ID: "e", Change: billing.SubscriptionChanged{SubscriptionID: "sub_1", Plan: "Basic", Status: billing.StatusCanceled, Created: now.Add(time.Second)}}, c, now.Add(time.Second))
	if n, _ := a.NextGrant(); n != next || a.Balance(now) != before {
		t.Errorf("deletion after cancel moved the chain to %+v or credits to %d", n, a.Balance(now))
	}
}

func TestRefundBeforePurchaseStillTakesBack(t *testing.T) {
	c := billing.DefaultCatalog()
	a := billing.NewAccount("u1", "", c.Free(), t0)
	evs := topUps()
	_ = a.Apply(evs[1], c, t0.Add(2*time.Hour)) // the refund first
	_ = a.Apply(evs[0], c, t0.Add(2*time.Hour))
	if got := a.Balance(t0.Add(2 * time.Hour)); got != 50 {
		t.Errorf("credits %d, want 50 (the refunded top-up taken back)", got)
	}
}

func TestPartialRefundTakesBackInProportion(t *testing.T) {
	c := billing.DefaultCatalog()
	a := billing.NewAccount("u1", "", c.Free(), t0)
	now := t0.Add(time.Hour)
	_ = a.Apply(topUps()[0], c, now) // Basic: 1000 credits for 500
	_ = a.Apply(billing.Event{ID: "r", Change: billing.PaymentReversed{Payment: "pi_t1", Charged: 500, Refunded: 125}}, c, now)
	if got := a.Balance(now); got != 50+750 {
		t.Errorf("credits %d, want 800 after a quarter refunded", got)
	}
}

func TestUnknownPlanChangesNothing(t *testing.T) {
	c := billing.DefaultCatalog()
	for _, ch := range []any{
		billing.CheckoutCompleted{SessionID: "cs", Kind: billing.PriceInstant, Plan: "Free", Paid: true},
		billing.InvoicePaid{InvoiceID: "in", SubscriptionID: "sub", Plan: "Gold"},
		billing.InvoiceFailed{InvoiceID: "in", SubscriptionID: "sub", Plan: ""},
		billing.SubscriptionChanged{SubscriptionID: "sub", Plan: "Gold", Status: billing.StatusActive},
	} {
		a := billing.NewAccount("u1", "", c.Free(), t0)
		err := a.Apply(billing.Event{ID: "e", Change: ch}, c, t0)
		if !errors.Is(err, billing.ErrInvalidPlan) {
			t.Errorf("%T: err %v, want ErrInvalidPlan", ch, err)
		}
		if a.Plan != billing.PlanFree || a.Subscription != nil || a.Balance(t0) != 50 {
			t.Errorf("%T changed the account: %+v", ch, a)
		}
	}
}

func TestIgnoredEventChangesNothing(t *testing.T) {
	c := billing.DefaultCatalog()
	a := billing.NewAccount("u1", "", c.Free(), t0)
	if err := a.Apply(billing.Event{ID: "e", Type: "customer.created"}, c, t0); err != nil || len(a.Entries()) != 1 {
		t.Errorf("err %v, entries %d", err, len(a.Entries()))
	}
}

// twoSubscriptions is what two subscription checkouts paid in a race give:
// sub_a on Basic, then sub_b on Power, both live.
func twoSubscriptions() []billing.Event {
	var evs []billing.Event
	add := func(at time.Time, typ string, ch any) {
		evs = append(evs, billing.Event{ID: fmt.Sprintf("evt_r%02d", len(evs)), Type: typ, Created: at, CustomerID: "cus_1", Change: ch})
	}
	for i, sub := range []struct{ id, plan string }{{"sub_a", "Basic"}, {"sub_b", "Power"}} {
		at := t0.Add(time.Duration(i) * time.Minute)
		add(at, "checkout.session.completed", billing.CheckoutCompleted{SessionID: "cs_" + sub.id, Kind: billing.PriceMonthly, Plan: sub.plan, SubscriptionID: sub.id, Paid: true, Created: at})
		add(at, "invoice.paid", billing.InvoicePaid{InvoiceID: "in_" + sub.id, SubscriptionID: sub.id, Plan: sub.plan,
			PeriodStart: at, PeriodEnd: at.Add(month), Payment: "pi_" + sub.id, Amount: 500, Created: at})
	}
	return evs
}

func deleted(id, sub, plan string, at time.Time) billing.Event {
	return billing.Event{ID: id, Type: "customer.subscription.deleted", Created: at, CustomerID: "cus_1",
		Change: billing.SubscriptionChanged{SubscriptionID: sub, Plan: plan, Status: billing.StatusCanceled, CurrentPeriodEnd: t0.Add(month), Created: at}}
}

// TestTheEndOfAnotherSubscriptionNeverReplacesTheLiveOne: while one
// subscription is live, the end of another (one the account followed, or
// one it never saw) leaves the account on the live one's plan, in any
// delivery order; the account is on Free only once none is live.
func TestTheEndOfAnotherSubscriptionNeverReplacesTheLiveOne(t *testing.T) {
	now := t0.Add(10 * 24 * time.Hour)
	end := t0.Add(24 * time.Hour)
	race := twoSubscriptions()
	cases := []struct {
		name       string
		evs        []billing.Event
		plan, sub  string
		status     string
		freeResume bool
	}{
		{"sub_b ends, sub_a lives", append(race, deleted("evt_del_b", "sub_b", "Power", end)), "Basic", "sub_a", billing.StatusActive, false},
		{"sub_a ends, sub_b lives", append(race, deleted("evt_del_a", "sub_a", "Basic", end)), "Power", "sub_b", billing.StatusActive, false},
		{"both live: the dearer plan", race, "Power", "sub_b", billing.StatusActive, false},
		{"both end", append(race, deleted("evt_del_a", "sub_a", "Basic", end), deleted("evt_del_b", "sub_b", "Power", end.Add(time.Second))),
			billing.PlanFree, "sub_b", billing.StatusCanceled, true},
		{"an unknown subscription ends", append(slices.Clip(race[:2]), deleted("evt_del_x", "sub_x", "Power", end)), "Basic", "sub_a", billing.StatusActive, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			var want state
			for i := range 100 {
				evs := append([]billing.Event(nil), tc.evs...)
				if i > 0 {
					rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
				}
				got := run(t, evs, now)
				if got.Plan != tc.plan || got.Subscription.ID != tc.sub || got.Subscription.Status != tc.status {
					t.Fatalf("order %d: plan %s following %s (%s), want %s following %s (%s)", i, got.Plan,
						got.Subscription.ID, got.Subscription.Status, tc.plan, tc.sub, tc.status)
				}
				if tc.freeResume != !got.NextGrantAt.IsZero() {
					t.Fatalf("order %d: next Free grant %v", i, got.NextGrantAt)
				}
				if i == 0 {
					want = got
				} else if !reflect.DeepEqual(got, want) {
					t.Fatalf("order %d:\n got %+v\nwant %+v", i, got, want)
				}
			}
		})
	}
}

// TestCancelEndsEverySubscription: the cancel endpoint cancels every
// subscription of the customer, so the account ends every one it knows, and
// their late deletion events change nothing more.
func TestCancelEndsEverySubscription(t *testing.T) {
	c := billing.DefaultCatalog()
	a := billing.NewAccount("u1", "", c.Free(), t0.Add(-time.Hour))
	for _, e := range twoSubscriptions() {
		if err := a.Apply(e, c, t0); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(time.Hour)
	a.CancelSubscription(now)
	next := a.NextGrantAt
	for _, e := range []billing.Event{deleted("d1", "sub_a", "Basic", now.Add(time.Second)), deleted("d2", "sub_b", "Power", now.Add(2*time.Second))} {
		if err := a.Apply(e, c, now.Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
		if a.Plan != billing.PlanFree || a.Subscription.Active() || !a.NextGrantAt.Equal(next) {
			t.Fatalf("after %s: plan %s, following %+v, next grant %v (want %v)", e.ID, a.Plan, a.Subscription, a.NextGrantAt, next)
		}
	}
	// A late renewal of sub_a, older than its end, brings nothing back.
	late := billing.Event{ID: "late", Change: billing.InvoicePaid{InvoiceID: "in_late", SubscriptionID: "sub_a", Plan: "Basic",
		PeriodStart: t0, PeriodEnd: t0.Add(month), Created: t0.Add(time.Minute)}}
	if err := a.Apply(late, c, now.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if a.Plan != billing.PlanFree {
		t.Errorf("a late invoice of an ended subscription brought back %s", a.Plan)
	}
}
