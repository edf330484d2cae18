package billing_test

import (
	"testing"

	"github.com/paymeter/paymeter/billing"
)

func TestOpenAccountHoldsFreeCreditsUntilTheEmailIsVerified(t *testing.T) {
	for _, tt := range []struct {
		name            string
		verified        bool
		requireVerified bool
		want            int64
	}{
		{"unverified, required", false, true, 0},
		{"verified (Google), required", true, true, 50},
		{"unverified, not required (make dev)", false, false, 50},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := billing.OpenAccount(billing.Identity{UID: "u1", Email: "u1@example.com", EmailVerified: tt.verified}, free, tt.requireVerified, at0)
			if a.Plan != billing.PlanFree || a.Balance(at0) != tt.want {
				t.Fatalf("new account: plan %s, %d credits, want Free with %d", a.Plan, a.Balance(at0), tt.want)
			}
			_, chain := a.NextGrant()
			if chain != (tt.want > 0) {
				t.Fatalf("Free chain started = %v with %d credits", chain, tt.want)
			}
		})
	}
}

func TestHeldFreeChainStartsOnceOnVerification(t *testing.T) {
	a := billing.OpenAccount(billing.Identity{UID: "u1", Email: "u1@example.com"}, free, true, at0)
	if len(a.Entries()) != 0 || !a.NextGrantAt.IsZero() {
		t.Fatalf("held account has ledger %+v, next grant %s", a.Entries(), a.NextGrantAt)
	}
	// Grant tasks (a forged or stale one) give nothing while it waits.
	for _, k := range []int64{0, 1, 5} {
		if a.GrantFree(k, free, at0.Add(billing.Week*6)) {
			t.Fatalf("period %d granted to an unverified account", k)
		}
	}
	// Moving to a paid plan and back does not start the chain either.
	a.SetPlan("Basic", at0)
	a.SetPlan(billing.PlanFree, at0.Add(billing.Week))
	if _, ok := a.NextGrant(); ok || a.Balance(at0.Add(billing.Week)) != 0 {
		t.Fatal("returning to Free started the held chain")
	}

	verifiedAt := at0.Add(3 * billing.Week)
	if !a.StartFree(free, verifiedAt) {
		t.Fatal("StartFree did not start the held chain")
	}
	if a.Balance(verifiedAt) != 50 {
		t.Fatalf("after verification: %d credits, want 50", a.Balance(verifiedAt))
	}
	next, ok := a.NextGrant()
	if !ok || next.Period != 1 || !next.At.Equal(verifiedAt.Add(billing.Week)) {
		t.Fatalf("next grant = %+v, %v; want period 1 a week after verification", next, ok)
	}
	if a.StartFree(free, verifiedAt) || a.GrantFree(0, free, verifiedAt) || a.Balance(verifiedAt) != 50 {
		t.Fatalf("a second start or period-0 task granted again: %d credits", a.Balance(verifiedAt))
	}
	if !a.GrantFree(1, free, next.At) || a.Balance(next.At) != 50 {
		t.Fatal("the chain does not continue a week on")
	}
	if es := a.Entries(); len(es) < 2 || es[0].Credits != 50 || es[0].Kind != billing.EntryGrant {
		t.Fatalf("ledger = %+v", es)
	}
}

func TestStartFreeOnAnAccountThatNeverWaitedDoesNothing(t *testing.T) {
	a := billing.NewAccount("u1", "u1@example.com", free, at0)
	if a.StartFree(free, at0.Add(billing.Week)) || a.Balance(at0) != 50 || len(a.Entries()) != 1 {
		t.Fatalf("StartFree changed an ordinary account: %d credits, %d entries", a.Balance(at0), len(a.Entries()))
	}
}

func TestVerifyingWhilePaidStartsTheChainOnReturnToFree(t *testing.T) {
	a := billing.OpenAccount(billing.Identity{UID: "u1"}, free, true, at0)
	a.SetPlan("Basic", at0)
	if !a.StartFree(free, at0.Add(billing.Week)) || a.Balance(at0.Add(billing.Week)) != 0 {
		t.Fatal("verifying on a paid plan must start the chain without a Free grant")
	}
	if _, ok := a.NextGrant(); ok {
		t.Fatal("Free chain runs on a paid plan")
	}
	a.SetPlan(billing.PlanFree, at0.Add(2*billing.Week))
	if _, ok := a.NextGrant(); !ok {
		t.Fatal("back on Free, the verified account's chain does not resume")
	}
}
