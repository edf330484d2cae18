package billing_test

import (
	"errors"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
)

// leaseAccount holds a Free grant of 50 expiring in a week and a top-up of
// 100 that never expires.
func leaseAccount(t *testing.T) *billing.Account {
	t.Helper()
	a := billing.NewAccount("u1", "u1@example.com", free, at0)
	a.AddGrant(billing.Grant{ID: "topup", Source: billing.SourceTopUp, Amount: 100, Remaining: 100}, at0, "Top-up")
	return a
}

func TestTakeLeaseDebitsTheFirstToExpireAndNeverMoreThanTheBalance(t *testing.T) {
	tests := []struct {
		name        string
		want        int64
		amount      int64
		free, topup int64 // what remains of each grant
	}{
		{"within the Free grant", 20, 20, 30, 100},
		{"across both grants", 70, 70, 0, 80},
		{"capped to the balance", 1000, 150, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := leaseAccount(t)
			l, err := a.TakeLease("l1", "i1", tt.want, 30*time.Second, at0)
			if err != nil {
				t.Fatal(err)
			}
			if l.Amount != tt.amount || a.Balance(at0) != 150-tt.amount || a.Leased() != tt.amount {
				t.Fatalf("lease %d, balance %d, leased %d", l.Amount, a.Balance(at0), a.Leased())
			}
			if g := remaining(a); g["free-0"] != tt.free || g["topup"] != tt.topup {
				t.Fatalf("grants after the lease: %v", g)
			}
		})
	}
}

func TestTakeLeaseAtZeroIsInsufficientAndTakesNothing(t *testing.T) {
	a := billing.NewAccount("u1", "", free, at0)
	if _, err := a.TakeLease("l1", "i1", 50, time.Minute, at0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.TakeLease("l2", "i1", 1, time.Minute, at0); !errors.Is(err, billing.ErrInsufficientCredits) {
		t.Fatalf("err = %v", err)
	}
	if len(a.Leases) != 1 {
		t.Fatalf("leases = %+v", a.Leases)
	}
}

func TestFreeAccountWithThreeCreditsLeasesThree(t *testing.T) {
	a := billing.NewAccount("u1", "", free, at0)
	if err := a.Debit(47, at0); err != nil {
		t.Fatal(err)
	}
	l, err := a.TakeLease("l1", "i1", 100, time.Minute, at0)
	if err != nil || l.Amount != 3 {
		t.Fatalf("lease %+v, %v", l, err)
	}
}

func TestSettleLeaseGivesTheUnusedBackWhereItCameFrom(t *testing.T) {
	a := leaseAccount(t)
	if _, err := a.TakeLease("l1", "i1", 70, time.Minute, at0); err != nil {
		t.Fatal(err)
	}
	// 70 came from Free (50) and the top-up (20); 30 were spent, from Free.
	back, err := a.SettleLease("l1", 30, at0.Add(time.Second))
	if err != nil || back != 40 {
		t.Fatalf("back %d, %v", back, err)
	}
	if g := remaining(a); g["free-0"] != 20 || g["topup"] != 100 {
		t.Fatalf("grants: %v", g)
	}
	if len(a.Leases) != 0 || a.Balance(at0) != 120 {
		t.Fatalf("leases %v balance %d", a.Leases, a.Balance(at0))
	}
	if _, err := a.SettleLease("l1", 0, at0); !errors.Is(err, billing.ErrNotFound) {
		t.Fatalf("settled twice: %v", err)
	}
	if got := a.SettledLeases(); len(got) != 1 || got[0] != "l1" {
		t.Fatalf("settled = %v", got)
	}
}

func TestSettleLeaseExpiresTheShareOfAnExpiredGrant(t *testing.T) {
	for _, gone := range []bool{false, true} {
		a := leaseAccount(t)
		if _, err := a.TakeLease("l1", "i1", 70, time.Minute, at0); err != nil {
			t.Fatal(err)
		}
		later := at0.Add(billing.Week + time.Hour) // the Free grant has expired
		if gone {
			a.Expire(later) // another change removed it meanwhile
		}
		n := len(a.Entries())
		back, err := a.SettleLease("l1", 10, later)
		if err != nil {
			t.Fatal(err)
		}
		// 10 spent from Free; Free's other 40 expire; the top-up's 20 come back.
		if back != 20 || a.Balance(later) != 100 {
			t.Fatalf("gone=%v: back %d balance %d", gone, back, a.Balance(later))
		}
		var expired int64
		for _, e := range a.Entries()[n:] {
			if e.Kind == billing.EntryExpiry && e.GrantID == "free-0" {
				expired += e.Credits
			}
		}
		if expired != -40 {
			t.Fatalf("gone=%v: expiry entries %+v", gone, a.Entries()[n:])
		}
	}
}

func TestSettleLeaseNeverTurnsExpiringCreditsIntoPermanentOnes(t *testing.T) {
	a := billing.NewAccount("u1", "", free, at0)
	if _, err := a.TakeLease("l1", "i1", 50, time.Minute, at0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SettleLease("l1", 0, at0); err != nil {
		t.Fatal(err)
	}
	for _, g := range a.Grants {
		if g.ExpiresAt.IsZero() {
			t.Fatalf("a permanent grant appeared: %+v", g)
		}
	}
	if a.Balance(at0.Add(billing.Week)) != 0 {
		t.Fatal("credits outlived their grant")
	}
}

func TestLeaseEndsWhenItsFirstGrantExpires(t *testing.T) {
	a := billing.NewAccount("u1", "", free, at0)
	soon := at0.Add(billing.Week - 10*time.Second)
	l, err := a.TakeLease("l1", "i1", 10, time.Minute, soon)
	if err != nil {
		t.Fatal(err)
	}
	if !l.ExpiresAt.Equal(at0.Add(billing.Week)) {
		t.Fatalf("expires %v", l.ExpiresAt)
	}
	if got := a.ExpiredLeases(at0.Add(billing.Week)); len(got) != 1 {
		t.Fatalf("expired leases = %v", got)
	}
	if got := a.ExpiredLeases(soon); len(got) != 0 {
		t.Fatalf("expired leases = %v", got)
	}
}

func TestSettleLeaseReappliesARefundSeenWhileTheCreditsWereOut(t *testing.T) {
	a := billing.NewAccount("u1", "", free, at0)
	a.AddGrant(billing.Grant{ID: "basic", Source: billing.SourceTopUp, Amount: 1000, Remaining: 1000, Payment: "pi_1"}, at0, "Basic")
	if _, err := a.TakeLease("l1", "i1", 1050, time.Minute, at0); err != nil {
		t.Fatal(err)
	}
	if got := a.Reverse("pi_1", 500, 500, 0, at0); got != 0 {
		t.Fatalf("took back %d from leased credits", got)
	}
	if _, err := a.SettleLease("l1", 50, at0); err != nil {
		t.Fatal(err)
	}
	if b := a.Balance(at0); b != 0 {
		t.Fatalf("balance after a full refund = %d", b)
	}
}

func TestLeaseArguments(t *testing.T) {
	a := leaseAccount(t)
	for _, c := range []struct {
		n   int64
		ttl time.Duration
	}{{0, time.Second}, {-1, time.Second}, {1, 0}} {
		if _, err := a.TakeLease("x", "i", c.n, c.ttl, at0); billing.ErrorCode(err) != billing.CodeBadRequest {
			t.Errorf("n=%d ttl=%s: %v", c.n, c.ttl, err)
		}
	}
	if _, err := a.TakeLease("l1", "i", 1, time.Second, at0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.TakeLease("l1", "i", 1, time.Second, at0); billing.ErrorCode(err) != billing.CodeConflict {
		t.Errorf("same id twice: %v", err)
	}
}

func remaining(a *billing.Account) map[string]int64 {
	m := map[string]int64{}
	for _, g := range a.Grants {
		m[g.ID] = g.Remaining
	}
	return m
}

// A lease past its expiry stays its holder's while the holder's journal
// promises it alive, never past the first expiry of its grants, and a
// reservation (no journal) is never renewed.
func TestRenewedLeaseLivesWhileItsHolderWritesAndNeverPastItsGrants(t *testing.T) {
	a := billing.NewAccount("u1", "", free, at0)
	ends := at0.Add(billing.Week) // the Free grant's expiry
	l, err := a.TakeLease("l1", "i1", 10, time.Minute, at0)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Until.Equal(ends) || !l.ExpiresAt.Equal(at0.Add(time.Minute)) {
		t.Fatalf("until %v, expires %v", l.Until, l.ExpiresAt)
	}
	later := at0.Add(time.Hour)
	for _, c := range []struct {
		now, alive time.Time
		want       bool
	}{
		{later, later.Add(time.Second), true},
		{later, later, false},              // the promise has lapsed
		{ends, ends.Add(time.Hour), false}, // its credits expire
		{ends.Add(-time.Second), ends.Add(time.Hour), true},
	} {
		if got := l.Renewed(c.now, c.alive); got != c.want {
			t.Errorf("Renewed(%v, %v) = %v, want %v", c.now, c.alive, got, c.want)
		}
	}
	hold, err := a.TakeLease("h1", billing.HoldOwner, 5, time.Minute, at0)
	if err != nil {
		t.Fatal(err)
	}
	if hold.Renewed(at0.Add(2*time.Minute), ends) {
		t.Fatal("a reservation was renewed")
	}
}
