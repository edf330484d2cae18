package store_test

import (
	"context"
	"errors"
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

// A revoked key is kept 30 days for the record, then Firestore's TTL policy
// on apiKeys.expireAt (terraform/firestore.tf) deletes it.
func TestRevokedKeyExpiresAfterThirtyDays(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	provision(t, s, "owner")
	_, keep := newKey(t, s, "owner")
	_, gone := newKey(t, s, "owner")
	snap, err := client.Collection("apiKeys").Doc(gone).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	goneID, _ := snap.Data()["id"].(string)
	before := time.Now()
	if err := s.RevokeKey(ctx, "owner", goneID); err != nil {
		t.Fatal(err)
	}
	for hash, want := range map[string]bool{keep: false, gone: true} {
		snap, err := client.Collection("apiKeys").Doc(hash).Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		at, has := snap.Data()["expireAt"].(time.Time)
		if has != want {
			t.Fatalf("key revoked=%v has expireAt=%v", want, has)
		}
		if want && (at.Before(before.Add(30*24*time.Hour)) || at.After(time.Now().Add(30*24*time.Hour))) {
			t.Fatalf("expireAt = %s, want 30 days after the revocation", at)
		}
	}
	if _, err := s.DebitKey(ctx, gone, 1, t0); !errors.Is(err, billing.ErrInvalidAPIKey) {
		t.Fatalf("debit with the revoked key: %v", err)
	}
}
