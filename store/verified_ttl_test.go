package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
)

func TestProvisionHoldsFreeCreditsOfAnUnverifiedEmail(t *testing.T) {
	s, _ := newStore(t)
	s.RequireVerifiedEmail(true)
	ctx := context.Background()
	held, created, err := s.Provision(ctx, billing.Identity{UID: "pw", Email: "pw@example.com"}, t0)
	if err != nil || !created {
		t.Fatalf("Provision = %v, %v", created, err)
	}
	google, _, err := s.Provision(ctx, billing.Identity{UID: "g", Email: "g@example.com", EmailVerified: true}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if held.Balance(t0) != 0 || google.Balance(t0) != 50 {
		t.Fatalf("unverified %d credits, verified %d; want 0 and 50", held.Balance(t0), google.Balance(t0))
	}
	if entries, _ := s.Ledger(ctx, "pw", 10); len(entries) != 0 {
		t.Fatalf("unverified account's ledger = %+v", entries)
	}
	again, err := s.Account(ctx, "pw")
	if err != nil || !again.FreeAwaitsVerifiedEmail {
		t.Fatalf("the hold did not survive a round trip: %+v, %v", again, err)
	}
}

// The daily sweep reads only chains that run: accounts waiting for a
// verified email (no nextGrantAt) are neither listed nor read.
func TestOverdueSkipsAccountsWaitingForAVerifiedEmail(t *testing.T) {
	s, _ := newStore(t)
	s.RequireVerifiedEmail(true)
	ctx := context.Background()
	for _, uid := range []string{"held1", "held2", "held3"} {
		if _, _, err := s.Provision(ctx, billing.Identity{UID: uid}, t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Provision(ctx, billing.Identity{UID: "live", EmailVerified: true}, t0); err != nil {
		t.Fatal(err)
	}
	page, next, err := s.Overdue(ctx, t0.Add(8*24*time.Hour), 2, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 1 || page[0].UID != "live" || next != "" {
		t.Fatalf("first page = %+v, next %q; want only the live chain, and no second page", page, next)
	}
}
