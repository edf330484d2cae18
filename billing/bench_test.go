package billing_test

import (
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
)

// BenchmarkDebit is the domain's share of a metered call: one debit of one
// credit from an account holding a Free, a subscription and a top-up grant.
func BenchmarkDebit(b *testing.B) {
	now := at0
	a := billing.NewAccount("u", "", free, now)
	a.AddGrant(billing.Grant{ID: "sub", Source: billing.SourceSubscription, Amount: 1 << 40, Remaining: 1 << 40, ExpiresAt: now.Add(30 * 24 * time.Hour)}, now, "")
	a.AddGrant(billing.Grant{ID: "topup", Source: billing.SourceTopUp, Amount: 1000, Remaining: 1000}, now, "")
	b.ReportAllocs()
	for b.Loop() {
		if err := a.Debit(1, now); err != nil {
			b.Fatal(err)
		}
	}
}
