package billing

import (
	"fmt"
	"sort"
	"time"
)

// Lease is a block of credits debited from an account's grants to one
// function instance, which spends them in memory and records what it used
// outside the account (a lease document). Settling the lease gives the
// unused credits back to the grants they came from. A lease whose instance
// never settles it expires; any account change settles it then.
type Lease struct {
	ID     string `firestore:"id"`
	Owner  string `firestore:"owner"` // the instance that holds it, for operators
	Amount int64  `firestore:"amount"`
	// Taken is how many credits came from each grant, by grant id; Sources
	// their grants' sources, for the ledger if a grant is gone at settlement.
	Taken     map[string]int64  `firestore:"taken"`
	Sources   map[string]string `firestore:"sources"`
	TakenAt   time.Time         `firestore:"takenAt"`
	ExpiresAt time.Time         `firestore:"expiresAt"`
	// Until is the first expiry of the grants it came from (zero when none
	// expires): a lease its holder keeps alive past ExpiresAt (Renewed) is
	// never spent past it.
	Until time.Time `firestore:"until,omitempty"`
	// Watch is the account's low-balance watch when the lease was taken,
	// for its holder (not stored).
	Watch LowBalanceWatch `firestore:"-"`
}

// Expired reports whether the lease is past its expiry at now. A holder
// that is alive may renew it past that (Renewed).
func (l Lease) Expired(now time.Time) bool { return !now.Before(l.ExpiresAt) }

// Renewed reports whether the lease, expired or not, is still its holder's
// at now because the holder promised, in its last write of its journal, to
// be alive until aliveUntil: one write renews every lease of an instance,
// whatever the number of accounts. Never past Until, and never for a
// reservation (HoldOwner), which has no journal.
func (l Lease) Renewed(now, aliveUntil time.Time) bool {
	if l.Owner == HoldOwner || !now.Before(aliveUntil) {
		return false
	}
	return l.Until.IsZero() || now.Before(l.Until)
}

// TakeLease debits up to n credits (never more than the balance) from the
// live grants, the first to expire first, as the lease id held by owner
// until now+ttl, or until the first of its grants expires if sooner. It
// returns ErrInsufficientCredits, taking nothing, when the balance is zero
// or the account is in debt, a CodeBadRequest error when n or ttl is not positive and a CodeConflict
// error when id is already leased.
func (a *Account) TakeLease(id, owner string, n int64, ttl time.Duration, now time.Time) (Lease, error) {
	if n <= 0 || ttl <= 0 {
		return Lease{}, Errorf(CodeBadRequest, "a lease needs a positive size and lifetime, got %d for %s", n, ttl)
	}
	if _, ok := a.lease(id); ok {
		return Lease{}, Errorf(CodeConflict, "lease %s is already held", id)
	}
	a.Expire(now)
	if a.Debt > 0 {
		return Lease{}, ErrInsufficientCredits
	}
	n = min(n, a.Balance(now))
	if n == 0 {
		return Lease{}, ErrInsufficientCredits
	}
	l := Lease{ID: id, Owner: owner, Amount: n, Taken: map[string]int64{}, Sources: map[string]string{},
		TakenAt: now, ExpiresAt: now.Add(ttl)}
	sortByExpiry(a.Grants)
	for i := range a.Grants {
		g := &a.Grants[i]
		take := min(n, g.Remaining)
		if take <= 0 {
			continue
		}
		g.Remaining -= take
		l.Taken[g.ID] += take
		l.Sources[g.ID] = g.Source
		if !g.ExpiresAt.IsZero() && (l.Until.IsZero() || g.ExpiresAt.Before(l.Until)) {
			l.Until = g.ExpiresAt // credits are not spent after they expire
		}
		if n -= take; n == 0 {
			break
		}
	}
	if !l.Until.IsZero() && l.Until.Before(l.ExpiresAt) {
		l.ExpiresAt = l.Until
	}
	a.Leases = append(a.Leases, l)
	a.Credits = a.Balance(now)
	return l, nil
}

// SettleLease ends lease id, of which used credits were spent: the unused
// rest goes back to the grants it came from, the latest to expire first, and
// pays what the account owes, if anything. A
// share whose grant has expired meanwhile expires now, with its ledger
// entry. used is capped to the lease's amount. It returns the credits given
// back to the balance and ErrNotFound for a lease the account does not hold
// (settled already).
func (a *Account) SettleLease(id string, used int64, now time.Time) (int64, error) {
	l, ok := a.lease(id)
	if !ok {
		return 0, ErrNotFound
	}
	used = max(0, min(used, l.Amount))
	// The credits spent came from the first to expire; a grant that is gone
	// or expired expired before every live one.
	type share struct {
		grant  *Grant // nil when the grant is gone
		id     string
		amount int64
	}
	shares := make([]share, 0, len(l.Taken))
	for gid, n := range l.Taken {
		shares = append(shares, share{grant: a.grant(gid), id: gid, amount: n})
	}
	sort.Slice(shares, func(i, j int) bool {
		gi, gj := shares[i].grant, shares[j].grant
		switch {
		case (gi == nil || !gi.Live(now)) != (gj == nil || !gj.Live(now)):
			return gi == nil || !gi.Live(now)
		case gi != nil && gj != nil && !gi.ExpiresAt.Equal(gj.ExpiresAt):
			if gi.ExpiresAt.IsZero() != gj.ExpiresAt.IsZero() {
				return !gi.ExpiresAt.IsZero()
			}
			return gi.ExpiresAt.Before(gj.ExpiresAt)
		default:
			return shares[i].id < shares[j].id
		}
	})
	// The lease ends first, so that a refund seen while its credits were out
	// counts them as spent or given back, not as out (applyReversal).
	kept := a.Leases[:0]
	for _, h := range a.Leases {
		if h.ID != id {
			kept = append(kept, h)
		}
	}
	a.Leases = kept
	var back int64
	for _, s := range shares {
		spent := min(used, s.amount)
		used -= spent
		unused := s.amount - spent
		if unused == 0 {
			continue
		}
		if s.grant != nil && s.grant.Live(now) {
			s.grant.Remaining += unused
			back += unused
			continue
		}
		source, at := l.Sources[s.id], now
		if s.grant != nil {
			source, at = s.grant.Source, s.grant.ExpiresAt
		}
		a.record(Entry{ID: fmt.Sprintf("expiry-%s-%s", s.id, l.ID), Kind: EntryExpiry, Source: source, Credits: -unused,
			GrantID: s.id, At: at, Note: fmt.Sprintf("%s credits expired", sourceWords(source))})
	}
	// A refund or dispute seen while the credits were out takes back what
	// came back, and records as debt what was spent.
	for _, s := range shares {
		if s.grant != nil && s.grant.Payment != "" {
			a.applyReversal(s.grant.Payment, now)
		}
	}
	a.settled = append(a.settled, id)
	a.payDebt(now)
	a.Expire(now)
	return back, nil
}

// ExpiredLeases returns the leases past their expiry at now.
func (a *Account) ExpiredLeases(now time.Time) []Lease {
	var out []Lease
	for _, l := range a.Leases {
		if l.Expired(now) {
			out = append(out, l)
		}
	}
	return out
}

// Leased is the sum of the credits out on leases, spent or not.
func (a *Account) Leased() int64 {
	var n int64
	for _, l := range a.Leases {
		n += l.Amount
	}
	return n
}

// SettledLeases returns the ids of the leases settled since the account
// was loaded, whose lease documents the store deletes with the account.
func (a *Account) SettledLeases() []string { return a.settled }

func (a *Account) lease(id string) (Lease, bool) {
	for _, l := range a.Leases {
		if l.ID == id {
			return l, true
		}
	}
	return Lease{}, false
}

func (a *Account) grant(id string) *Grant {
	for i := range a.Grants {
		if a.Grants[i].ID == id {
			return &a.Grants[i]
		}
	}
	return nil
}
