package billing

import (
	"fmt"
	"sort"
	"time"
)

// Debited is what one metered call cost: whose credits, how many, for which
// route, and the grants they came from, so that a refund can put them back.
type Debited struct {
	UID       string
	KeyID     string
	Route     string
	Cost      int64
	Remaining int64     // the balance after the debit, as the debiting instance knows it
	At        time.Time // when it was debited: the day its usage was counted on
	// Taken is the credits by grant id: exactly those of the call in txn
	// mode; in lease mode those of the lease the call was served from.
	Taken map[string]int64
}

// DebitFrom is Debit, also returning how many credits each grant gave.
func (a *Account) DebitFrom(n int64, now time.Time) (map[string]int64, error) {
	if n <= 0 {
		return nil, Errorf(CodeBadRequest, "a debit must be positive, got %d", n)
	}
	a.Expire(now)
	if a.Debt > 0 || a.Balance(now) < n {
		return nil, ErrInsufficientCredits
	}
	taken := map[string]int64{}
	sortByExpiry(a.Grants)
	for i := range a.Grants {
		take := min(n, a.Grants[i].Remaining)
		if take <= 0 {
			continue
		}
		a.Grants[i].Remaining -= take
		taken[a.Grants[i].ID] += take
		if n -= take; n == 0 {
			break
		}
	}
	a.Credits = a.Balance(now)
	return taken, nil
}

// Refund gives back n credits of a call that the operator's service did not
// serve, to the grants in taken that gave them, the first to expire first
// (as they were debited). Credits of a grant that has expired or is gone
// since are not revived: they are recorded as expired. Refunded credits then
// meet refunds and disputes of the grants' payments and pay debt as any
// returning credits do. It returns the credits given back to the balance.
// The caller makes it run once per call (the store records it).
func (a *Account) Refund(id string, taken map[string]int64, n int64, now time.Time) int64 {
	ids := make([]string, 0, len(taken))
	for gid := range taken {
		ids = append(ids, gid)
	}
	expiry := func(gid string) time.Time {
		if g := a.grant(gid); g != nil {
			return g.ExpiresAt
		}
		return time.Time{}
	}
	sort.Slice(ids, func(i, j int) bool {
		ei, ej := expiry(ids[i]), expiry(ids[j])
		if ei.IsZero() != ej.IsZero() {
			return !ei.IsZero()
		}
		if !ei.Equal(ej) {
			return ei.Before(ej)
		}
		return ids[i] < ids[j]
	})
	a.Expire(now)
	var back int64
	for _, gid := range ids {
		give := min(n, taken[gid])
		if give <= 0 {
			continue
		}
		n -= give
		if g := a.grant(gid); g != nil && g.Live(now) {
			g.Remaining += give
			back += give
			if g.Payment != "" {
				a.applyReversal(g.Payment, now)
			}
			continue
		}
		a.record(Entry{ID: fmt.Sprintf("expiry-%s-%s", gid, id), Kind: EntryExpiry, Credits: -give, GrantID: gid,
			At: now, Note: "Refunded credits had expired"})
	}
	a.payDebt(now)
	a.Credits = a.Balance(now)
	return back
}

// Hold reserves n credits, taken from the live grants as a lease named id
// that ends at now+ttl (or when the first of its grants expires, if
// sooner): they leave the balance for every instance until the hold is
// settled (SettleLease with what was spent) or expires, which gives them
// all back. It returns ErrInsufficientCredits, holding nothing, when fewer
// than n are available or the account is in debt.
func (a *Account) Hold(id string, n int64, ttl time.Duration, now time.Time) (Lease, error) {
	a.Expire(now)
	if n <= 0 {
		return Lease{}, Errorf(CodeBadRequest, "a reservation holds at least 1 credit")
	}
	if a.Debt > 0 || a.Balance(now) < n {
		return Lease{}, ErrInsufficientCredits
	}
	return a.TakeLease(id, HoldOwner, n, ttl, now)
}

// HoldOwner is the Owner of the leases that are reservations.
const HoldOwner = "reservation"

// IdempotencyTTL is how long an idempotent answer is replayed.
const IdempotencyTTL = 24 * time.Hour

// ValidIdempotencyKey returns a CodeBadRequest error unless k is 1 to 255
// printable ASCII characters.
func ValidIdempotencyKey(k string) error {
	if len(k) < 1 || len(k) > 255 {
		return Errorf(CodeBadRequest, "an Idempotency-Key is 1 to 255 printable ASCII characters")
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return Errorf(CodeBadRequest, "an Idempotency-Key is 1 to 255 printable ASCII characters")
		}
	}
	return nil
}

// Answer is a stored answer to an idempotent request: replayed, same status
// and body, to a repeat of it. Pending marks one whose answer is not known
// yet (a call forwarded to an upstream).
type Answer struct {
	Method      string            `firestore:"method"`
	Path        string            `firestore:"path"`
	Status      int               `firestore:"status"`
	Body        []byte            `firestore:"body"`
	Header      map[string]string `firestore:"header"`
	Pending     bool              `firestore:"pending"`
	RequestID   string            `firestore:"requestId"`
	CreatedAt   time.Time         `firestore:"createdAt"`
	ExpireAt    time.Time         `firestore:"expireAt"` // a Firestore TTL deletes it then
	BodyOmitted bool              `firestore:"bodyOmitted,omitempty"`
}

// Matches returns ErrIdempotencyConflict unless the answer is to the same
// method and path.
func (ans Answer) Matches(method, path string) error {
	if ans.Method != method || ans.Path != path {
		return ErrIdempotencyConflict
	}
	return nil
}
