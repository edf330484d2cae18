package billing_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
)

var (
	at0  = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	free = billing.DefaultCatalog().Free()
)

func TestCatalogMatchesTheDesignBrief(t *testing.T) {
	c := billing.DefaultCatalog()
	want := map[string][2]int64{"Free": {50, 0}, "Basic": {1000, 500}, "Power": {100000, 5000}}
	for name, w := range want {
		p, ok := c.Plan(name)
		if !ok || p.Credits != w[0] {
			t.Fatalf("%s: %+v", name, p)
		}
		for _, kind := range []string{billing.PriceInstant, billing.PriceMonthly} {
			pr, ok := p.Price(kind)
			if w[1] == 0 && ok || w[1] != 0 && (pr.Amount != w[1] || pr.Currency != "gbp") {
				t.Errorf("%s %s price = %+v", name, kind, pr)
			}
		}
	}
	if _, err := c.PaidPlan("Free"); !errors.Is(err, billing.ErrInvalidPlan) {
		t.Errorf("Free is buyable: %v", err)
	}
	if _, err := c.PaidPlan("Gold"); !errors.Is(err, billing.ErrInvalidPlan) {
		t.Errorf("an unknown plan is buyable: %v", err)
	}
	if got := billing.LookupKey("Basic", billing.PriceMonthly); got != "Basic_monthly_price" {
		t.Errorf("lookup key = %s", got)
	}
}

func TestParseCatalogRefusesBadPlans(t *testing.T) {
	for name, doc := range map[string]string{
		"not json":         `{`,
		"no free":          `{"plans":[{"name":"Basic","credits":1,"period":"month","prices":[{"kind":"instant","amount":1,"currency":"gbp"}]}]}`,
		"negative credits": `{"plans":[{"name":"Free","credits":-1,"period":"week","prices":[]}]}`,
		"bad period":       `{"plans":[{"name":"Free","credits":1,"period":"year","prices":[]}]}`,
		"repeated":         `{"plans":[{"name":"Free","credits":1,"period":"week"},{"name":"Free","credits":1,"period":"week"}]}`,
		"bad price":        `{"plans":[{"name":"Free","credits":1,"period":"week"},{"name":"B","credits":1,"period":"month","prices":[{"kind":"yearly","amount":1,"currency":"gbp"}]}]}`,
	} {
		if _, err := billing.ParseCatalog([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestNewAccountHasOneWeekOfFreeCredits(t *testing.T) {
	a := billing.NewAccount("u1", "u1@example.com", free, at0)
	if a.Plan != billing.PlanFree || a.Balance(at0) != 50 {
		t.Fatalf("new account: plan %s, %d credits", a.Plan, a.Balance(at0))
	}
	if !a.NextGrantAt.Equal(at0.Add(billing.Week)) {
		t.Fatalf("next grant at %s, want a week on", a.NextGrantAt)
	}
	if a.Balance(at0.Add(billing.Week)) != 0 {
		t.Fatal("the Free grant outlives its week")
	}
	task, ok := a.NextGrant()
	if !ok || task.Period != 1 || !task.At.Equal(a.NextGrantAt) {
		t.Fatalf("next grant task = %+v, %v", task, ok)
	}
	if es := a.Entries(); len(es) != 1 || es[0].Kind != billing.EntryGrant || es[0].Credits != 50 {
		t.Fatalf("ledger = %+v", es)
	}
}

func TestDebitTakesFromTheGrantThatExpiresFirst(t *testing.T) {
	a := billing.NewAccount("u1", "", free, at0)                                                                                                     // 50, expires at0+1w
	a.AddGrant(billing.Grant{ID: "topup", Source: billing.SourceTopUp, Amount: 100, Remaining: 100}, at0, "")                                        // never expires
	a.AddGrant(billing.Grant{ID: "sub", Source: billing.SourceSubscription, Amount: 30, Remaining: 30, ExpiresAt: at0.Add(48 * time.Hour)}, at0, "") // expires first
	if err := a.Debit(40, at0); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, g := range a.Grants {
		got[g.ID] = g.Remaining
	}
	if got["sub"] != 0 || got["free-0"] != 40 || got["topup"] != 100 {
		t.Fatalf("remaining after debit of 40: %v", got)
	}
	// Once the subscription and Free grants expire, only the top-up counts.
	later := at0.Add(8 * 24 * time.Hour)
	if a.Balance(later) != 100 {
		t.Fatalf("balance after expiry = %d", a.Balance(later))
	}
	if err := a.Debit(101, later); !errors.Is(err, billing.ErrInsufficientCredits) {
		t.Fatalf("overdraw: %v", err)
	}
	if a.Balance(later) != 100 {
		t.Fatal("a refused debit took credits")
	}
	for _, n := range []int64{0, -5} {
		if err := a.Debit(n, later); billing.ErrorCode(err) != billing.CodeBadRequest {
			t.Errorf("debit %d: %v", n, err)
		}
	}
}

func TestFreeAllowanceResetsAndDoesNotPileUp(t *testing.T) {
	a := billing.NewAccount("u1", "", free, at0)
	if err := a.Debit(10, at0); err != nil {
		t.Fatal(err)
	}
	week := at0.Add(billing.Week)
	if !a.GrantFree(1, free, week) {
		t.Fatal("the week-1 grant was refused")
	}
	if got := a.Balance(week); got != 50 {
		t.Fatalf("balance after the weekly grant = %d, want 50 (not 90)", got)
	}
	if a.GrantFree(1, free, week) || a.GrantFree(0, free, week) {
		t.Fatal("a period was granted twice")
	}
	if a.GrantFree(2, free, week) {
		t.Fatal("a grant not yet due was applied")
	}
	var expired int64
	for _, e := range a.Entries() {
		if e.Kind == billing.EntryExpiry {
			expired += e.Credits
		}
	}
	if expired != -40 {
		t.Fatalf("expiry entries total %d, want -40", expired)
	}
	// A task three weeks late grants the current week once, not the missed ones.
	late := at0.Add(4*billing.Week + time.Hour)
	if !a.GrantFree(2, free, late) || a.Balance(late) != 50 || a.NextFreePeriod != 5 {
		t.Fatalf("late grant: balance %d, next period %d", a.Balance(late), a.NextFreePeriod)
	}
}

func TestPaidPlanPausesAndFreeResumesWithoutGranting(t *testing.T) {
	a := billing.NewAccount("u1", "", free, at0)
	a.SetPlan(billing.PlanBasic, at0)
	if _, ok := a.NextGrant(); ok || !a.NextGrantAt.IsZero() {
		t.Fatal("a paid plan did not pause the Free chain")
	}
	if a.GrantFree(1, free, at0.Add(billing.Week)) {
		t.Fatal("a paid account got a Free grant")
	}
	back := at0.Add(10 * 24 * time.Hour)
	for range 5 { // cancelling again and again grants nothing (original bug 3)
		a.SetPlan(billing.PlanFree, back)
	}
	if a.Balance(back) != 0 {
		t.Fatalf("going back to Free granted %d credits", a.Balance(back))
	}
	task, ok := a.NextGrant()
	if !ok || task.Period != 2 || !task.At.Equal(at0.Add(2*billing.Week)) {
		t.Fatalf("resumed chain = %+v, %v; want period 2 at the next week boundary", task, ok)
	}
}

func TestReverseTakesBackInProportionInAnyOrder(t *testing.T) {
	grant := billing.Grant{ID: "inv_1", Source: billing.SourceSubscription, Amount: 1000, Remaining: 1000, Payment: "pi_1", ExpiresAt: at0.Add(30 * 24 * time.Hour)}
	// In order: grant, spend 100, refund half, then the full refund.
	a := billing.NewAccount("u1", "", free, at0)
	a.AddGrant(grant, at0, "Basic")
	_ = a.Debit(150, at0) // 50 Free first, then 100 of the grant
	if got := a.Reverse("pi_1", 500, 250, 0, at0); got != 500 {
		t.Fatalf("half refund took back %d, want 500", got)
	}
	if got := a.Reverse("pi_1", 500, 250, 0, at0); got != 0 {
		t.Fatalf("the same refund again took back %d", got)
	}
	if got := a.Reverse("pi_1", 500, 500, 0, at0); got != 400 {
		t.Fatalf("full refund took back %d, want the 400 left", got)
	}
	// Out of order: the refund arrives before the grant it takes back from.
	b := billing.NewAccount("u2", "", free, at0)
	b.Reverse("pi_1", 500, 500, 0, at0)
	b.AddGrant(grant, at0, "Basic")
	if b.Balance(at0) != 50 {
		t.Fatalf("grant after its refund left %d credits, want only the Free 50", b.Balance(at0))
	}
	// A dispute takes back what is left too.
	c := billing.NewAccount("u3", "", free, at0)
	c.AddGrant(grant, at0, "Basic")
	c.Reverse("pi_1", 500, 0, 500, at0)
	if c.Balance(at0) != 50 {
		t.Fatalf("after a dispute %d credits are left", c.Balance(at0))
	}
}

func TestAPIKeys(t *testing.T) {
	secret, key, hash, err := billing.NewAPIKey(rand.Reader, "u1", " ci ", at0)
	if err != nil {
		t.Fatal(err)
	}
	if !billing.WellFormedKey(secret) || !strings.HasPrefix(secret, key.Prefix) || key.Name != "ci" {
		t.Fatalf("key %+v for secret of %d chars", key, len(secret))
	}
	if hash != billing.HashKey(secret) || len(hash) != 64 || strings.Contains(hash, secret) {
		t.Fatal("the storage id is not the key's SHA-256")
	}
	other, _, _, _ := billing.NewAPIKey(rand.Reader, "u1", "ci", at0)
	if other == secret {
		t.Fatal("two keys are equal")
	}
	// 160 random bits: a reader that runs dry fails rather than making a weak key.
	if _, _, _, err := billing.NewAPIKey(bytes.NewReader(make([]byte, 10)), "u1", "x", at0); err == nil {
		t.Fatal("a key was made from 80 bits")
	}
	for _, bad := range []string{"", "   ", strings.Repeat("x", 65), "tab\tname"} {
		if _, _, _, err := billing.NewAPIKey(rand.Reader, "u1", bad, at0); billing.ErrorCode(err) != billing.CodeBadRequest {
			t.Errorf("name %q: %v", bad, err)
		}
	}
	for _, bad := range []string{"", "pmk_", secret + "a", strings.ToUpper(secret), "sk_live_" + secret[4:]} {
		if billing.WellFormedKey(bad) {
			t.Errorf("%q looks like a key", bad)
		}
	}
}
