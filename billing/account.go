package billing

import (
	"fmt"
	"sort"
	"time"
)

// Week is the Free plan's grant period.
const Week = 7 * 24 * time.Hour

// Grant sources.
const (
	SourceFree         = "free"
	SourceSubscription = "subscription"
	SourceTopUp        = "topup"
	SourceAdjustment   = "adjustment"
)

// Grant is a block of credits with what remains of it and when it expires.
// A zero ExpiresAt never expires.
type Grant struct {
	ID        string    `firestore:"id"`
	Source    string    `firestore:"source"`
	Amount    int64     `firestore:"amount"`
	Remaining int64     `firestore:"remaining"`
	GrantedAt time.Time `firestore:"grantedAt"`
	ExpiresAt time.Time `firestore:"expiresAt"`
	// Payment names what paid for the grant (a Stripe invoice or payment
	// intent id), so that a refund or dispute finds it. Empty for Free.
	Payment string `firestore:"payment,omitempty"`
	// ClawedBack counts the credits taken back by refunds and disputes.
	ClawedBack int64 `firestore:"clawedBack,omitempty"`
	// Owed counts the credits that refunds and disputes took back from this
	// grant beyond what remained of it: they became debt (Account.Debt).
	Owed int64 `firestore:"owed,omitempty"`
	// PaidDebt counts the credits of this grant that went to pay debt.
	PaidDebt int64 `firestore:"paidDebt,omitempty"`
	// Tiers are the plans a subscription period was paid for (period.go);
	// empty for every other grant.
	Tiers []Tier `firestore:"tiers,omitempty"`
}

// Live reports whether the grant still counts at now.
func (g Grant) Live(now time.Time) bool {
	return g.ExpiresAt.IsZero() || now.Before(g.ExpiresAt)
}

// Subscription is the account's view of its paid subscription.
type Subscription struct {
	ID                string    `firestore:"id"`
	Plan              string    `firestore:"plan"`
	Status            string    `firestore:"status"`
	CurrentPeriodEnd  time.Time `firestore:"currentPeriodEnd"`
	CancelAtPeriodEnd bool      `firestore:"cancelAtPeriodEnd"`
	// UpdatedAt is the time of the newest billing event applied to it; an
	// older event arriving late does not overwrite a newer state.
	UpdatedAt time.Time `firestore:"updatedAt"`
}

// Active reports whether the subscription entitles the account to its plan.
func (s *Subscription) Active() bool {
	return s != nil && (s.Status == "active" || s.Status == "trialing" || s.Status == "past_due")
}

// Reversal records money taken back from a payment: the amount charged and
// how much of it was refunded or disputed, in the smallest currency unit.
// Each figure only grows, so events applied in any order converge.
type Reversal struct {
	Charged  int64 `firestore:"charged"`
	Refunded int64 `firestore:"refunded"`
	Disputed int64 `firestore:"disputed"`
}

// Account is one user's plan, subscription and credits.
type Account struct {
	UID          string        `firestore:"uid"`
	Email        string        `firestore:"email"`
	Plan         string        `firestore:"plan"`
	CustomerID   string        `firestore:"customerId"`
	Subscription *Subscription `firestore:"subscription"`
	// OtherSubscriptions are the newest snapshots of the customer's other
	// subscriptions: a second one paid in a race, or ended ones kept for a
	// while so that their late events cannot bring them back (events.go).
	OtherSubscriptions []Subscription `firestore:"otherSubscriptions,omitempty"`
	Grants             []Grant        `firestore:"grants"`
	// Credits is the balance when the account was last written, for readers
	// that cannot compute it (security-rules clients); Balance is the truth.
	Credits int64 `firestore:"credits"`
	// The Free chain: period k starts at FreeAnchor + k weeks. NextFreePeriod
	// is the next period to grant; NextGrantAt its start, zero while paused.
	FreeAnchor     time.Time `firestore:"freeAnchor"`
	NextFreePeriod int64     `firestore:"nextFreePeriod"`
	NextGrantAt    time.Time `firestore:"nextGrantAt"`
	// FreeAwaitsVerifiedEmail holds the Free chain back: the account was
	// opened from an unverified email where the operator requires one
	// (REQUIRE_VERIFIED_EMAIL), so nothing is granted until StartFree.
	FreeAwaitsVerifiedEmail bool `firestore:"freeAwaitsVerifiedEmail,omitempty"`
	// Reversals by payment id: refunds and disputes seen, even before the
	// grant they take back from arrives.
	Reversals map[string]Reversal `firestore:"reversals"`
	// Debt is the credits owed: what refunds and disputes took back beyond
	// what remained of their grants, less what has been paid since. While it
	// is above zero nothing is debited or leased, and credits that come in
	// (a new grant, a lease given back) pay it first.
	Debt      int64     `firestore:"debt"`
	CreatedAt time.Time `firestore:"createdAt"`
	// Leases are blocks of credits debited to function instances that spend
	// them in memory (lease.go); they are not part of the balance.
	Leases []Lease `firestore:"leases,omitempty"`
	// Notify is the owner's notification settings; Watch what the balance
	// notices remember (notify.go).
	Notify NotifySettings `firestore:"notify"`
	Watch  NoticeWatch    `firestore:"watch"`
	// KeysUsed is when each of the account's keys (by id) was last used,
	// as the debits and lease takings that write the account anyway
	// recorded it: a key's lastUsedAt costs no write of its own.
	KeysUsed map[string]time.Time `firestore:"keysUsed,omitempty"`
	// Usage is the use of the latest month in which credits were spent,
	// carried by the account's own writes so that a debit costs no write
	// beyond the account's. Earlier months are in the usage documents
	// (UsageKeys) that the store moves it to when a month begins.
	Usage *MonthUsage `firestore:"usage,omitempty"`

	entries []Entry  // ledger entries made since load, written with the account
	settled []string // leases settled since load, whose lease documents go with the account
	notices []Notice // notices made since load, written to the outbox with the account
}

// NewAccount returns a Free account with its first Free grant, expiring a
// week from now when the next one is due.
func NewAccount(uid, email string, free Plan, now time.Time) *Account {
	// Stores keep microseconds; the chain's times must survive a round trip.
	now = now.Truncate(time.Microsecond)
	a := &Account{UID: uid, Email: email, Plan: PlanFree, FreeAnchor: now, CreatedAt: now}
	a.grantFree(0, free, now)
	return a
}

// OpenAccount returns the new account of id: NewAccount's, unless
// requireVerified is set and id's email is not verified, in which case the
// account is Free with no credits and its Free chain waits for StartFree.
func OpenAccount(id Identity, free Plan, requireVerified bool, now time.Time) *Account {
	if !requireVerified || id.EmailVerified {
		return NewAccount(id.UID, id.Email, free, now)
	}
	now = now.Truncate(time.Microsecond)
	return &Account{UID: id.UID, Email: id.Email, Plan: PlanFree, FreeAnchor: now, CreatedAt: now,
		FreeAwaitsVerifiedEmail: true}
}

// Entries returns the ledger entries made since the account was loaded.
func (a *Account) Entries() []Entry { return a.entries }

// Balance is the sum of what remains of the grants live at now.
func (a *Account) Balance(now time.Time) int64 {
	var n int64
	for _, g := range a.Grants {
		if g.Live(now) {
			n += g.Remaining
		}
	}
	return n
}

// LiveGrants returns the grants that count at now, the first to expire first.
func (a *Account) LiveGrants(now time.Time) []Grant {
	var live []Grant
	for _, g := range a.Grants {
		if g.Live(now) && g.Remaining > 0 {
			live = append(live, g)
		}
	}
	sortByExpiry(live)
	return live
}

// Expire removes the grants that have expired by now, with a ledger entry
// for each that still had credits.
func (a *Account) Expire(now time.Time) {
	kept := a.Grants[:0]
	for _, g := range a.Grants {
		if g.Live(now) {
			kept = append(kept, g)
			continue
		}
		if g.Remaining > 0 {
			a.record(Entry{ID: "expiry-" + g.ID, Kind: EntryExpiry, Source: g.Source, Credits: -g.Remaining,
				GrantID: g.ID, At: g.ExpiresAt, Note: fmt.Sprintf("%s credits expired", sourceWords(g.Source))})
		}
	}
	a.Grants = kept
	a.Credits = a.Balance(now)
}

// Debit takes n credits from the live grants, the first to expire first. It
// returns ErrInsufficientCredits, taking nothing, when fewer than n remain
// or while the account is in debt, and a CodeBadRequest error when n is not
// positive.
func (a *Account) Debit(n int64, now time.Time) error {
	_, err := a.DebitFrom(n, now)
	return err
}

// Credit returns n credits to the account as a grant that never expires;
// id makes the credit idempotent. It is how unused leased credits go back.
func (a *Account) Credit(id, source string, n int64, now time.Time, note string) bool {
	return a.AddGrant(Grant{ID: id, Source: source, Amount: n, Remaining: n, GrantedAt: now}, now, note)
}

// AddGrant adds g unless a grant with its id is already held, recording the
// grant in the ledger. A refund or dispute seen before the grant is applied
// to it at once, then the grant pays what the account owes (Debt). It
// reports whether the grant was added.
func (a *Account) AddGrant(g Grant, now time.Time, note string) bool {
	for _, h := range a.Grants {
		if h.ID == g.ID {
			return false
		}
	}
	a.Expire(now)
	if g.GrantedAt.IsZero() {
		g.GrantedAt = now
	}
	a.Grants = append(a.Grants, g)
	if g.Amount > 0 {
		a.armExhausted()
	}
	a.record(Entry{ID: "grant-" + g.ID, Kind: EntryGrant, Source: g.Source, Credits: g.Amount,
		GrantID: g.ID, At: g.GrantedAt, ExpiresAt: g.ExpiresAt, Note: note})
	if g.Payment != "" {
		a.applyReversal(g.Payment, now)
	}
	a.payDebt(now)
	a.Credits = a.Balance(now)
	return true
}

// Reverse records that money was refunded or disputed on a payment and takes
// back, from the grant that payment bought, the same fraction of its credits.
// What that grant no longer holds becomes debt, which the account's other
// live credits pay at once as far as they go. refunded and disputed are
// cumulative amounts; a figure lower than one already seen changes nothing.
// It returns the credits taken back from the grant by this call.
func (a *Account) Reverse(payment string, charged, refunded, disputed int64, now time.Time) int64 {
	if payment == "" || charged <= 0 {
		return 0
	}
	if a.Reversals == nil {
		a.Reversals = map[string]Reversal{}
	}
	r := a.Reversals[payment]
	r.Charged = max(r.Charged, charged)
	r.Refunded = max(r.Refunded, refunded)
	r.Disputed = max(r.Disputed, disputed)
	a.Reversals[payment] = r
	a.Expire(now)
	owed := a.owed()
	taken := a.applyReversal(payment, now)
	a.payDebt(now)
	a.Credits = a.Balance(now)
	if newDebt := a.owed() - owed; taken > 0 || newDebt > 0 {
		a.notify(Notice{ID: fmt.Sprintf("clawback-%s-%d-%d", payment, r.Refunded, r.Disputed), Type: NoticeClawback,
			Created: now, Data: NoticeData{Payment: payment, TakenBack: taken, Debt: newDebt, Balance: a.Balance(now),
				Plan: a.Plan, Reason: reversalWords(r)}})
	}
	return taken
}

// owed is what refunds and disputes have taken beyond their grants, in all.
func (a *Account) owed() int64 {
	var n int64
	for _, g := range a.Grants {
		n += g.Owed
	}
	return n
}

// applyReversal takes back from the grants that payment bought what the
// reversals seen so far call for, and records as debt what they no longer
// hold. Every figure is cumulative per grant, so applying it again, or after
// another reversal of the same payment, converges.
func (a *Account) applyReversal(payment string, now time.Time) int64 {
	if r, ok := a.Reversals[payment]; !ok || r.Charged <= 0 {
		return 0
	}
	var taken int64
	for i := range a.Grants {
		g := &a.Grants[i]
		if !g.paidBy(payment) || !g.Live(now) {
			continue
		}
		target, r := g.reversalTarget(a.Reversals)
		need := target - g.ClawedBack - g.Owed
		if need < 0 {
			// A cheaper tier of the period came in after a reversal of a
			// dearer one: the reversed payment bought less than was taken.
			a.giveBack(g, -need, r, now)
			continue
		}
		if need == 0 {
			continue
		}
		if take := min(need, g.Remaining); take > 0 {
			g.Remaining -= take
			g.ClawedBack += take
			taken += take
			need -= take
			// One entry per grant, holding all that was taken back from it,
			// so that partial refunds leave the same ledger in any order.
			a.record(Entry{ID: "clawback-" + g.ID, Kind: EntryClawback, Source: g.Source,
				Credits: -g.ClawedBack, GrantID: g.ID, At: now, Note: reversalWords(r)})
		}
		// Credits of the grant out on a lease are settled later (SettleLease
		// applies the reversal again); the rest was spent: it is owed, with
		// one cumulative entry per grant.
		if need -= min(need, a.leasedFrom(g.ID)); need > 0 {
			g.Owed += need
			a.Debt += need
			a.record(Entry{ID: "debt-" + g.ID, Kind: EntryDebt, Source: g.Source, Credits: -g.Owed, GrantID: g.ID,
				At: now, Note: fmt.Sprintf("Owed: %d credits already spent. %s", g.Owed, reversalWords(r))})
		}
	}
	return taken
}

// giveBack undoes n credits of what reversals took from g: first what was
// owed, then what was taken back.
func (a *Account) giveBack(g *Grant, n int64, r Reversal, now time.Time) {
	if owed := min(n, g.Owed); owed > 0 {
		g.Owed -= owed
		a.Debt -= min(owed, a.Debt)
		n -= owed
		a.record(Entry{ID: "debt-" + g.ID, Kind: EntryDebt, Source: g.Source, Credits: -g.Owed, GrantID: g.ID,
			At: now, Note: fmt.Sprintf("Owed: %d credits already spent. %s", g.Owed, reversalWords(r))})
	}
	if back := min(n, g.ClawedBack); back > 0 {
		g.ClawedBack -= back
		g.Remaining += back
		a.record(Entry{ID: "clawback-" + g.ID, Kind: EntryClawback, Source: g.Source,
			Credits: -g.ClawedBack, GrantID: g.ID, At: now, Note: reversalWords(r)})
	}
}

// leasedFrom is how many credits of grant id are out on leases.
func (a *Account) leasedFrom(id string) int64 {
	var n int64
	for _, l := range a.Leases {
		n += l.Taken[id]
	}
	return n
}

// payDebt pays what the account owes from its live credits, the first to
// expire first, with one cumulative ledger entry per paying grant.
func (a *Account) payDebt(now time.Time) {
	if a.Debt <= 0 {
		return
	}
	sortByExpiry(a.Grants)
	for i := range a.Grants {
		g := &a.Grants[i]
		pay := min(a.Debt, g.Remaining)
		if pay <= 0 || !g.Live(now) {
			continue
		}
		g.Remaining -= pay
		g.PaidDebt += pay
		a.Debt -= pay
		a.record(Entry{ID: "debtpaid-" + g.ID, Kind: EntryDebtPaid, Source: g.Source, Credits: -g.PaidDebt,
			GrantID: g.ID, At: now, Note: fmt.Sprintf("%s credits paid towards debt", sourceWords(g.Source))})
		if a.Debt == 0 {
			return
		}
	}
}

func (a *Account) record(e Entry) { a.entries = append(a.entries, e) }

func sortByExpiry(gs []Grant) {
	sort.SliceStable(gs, func(i, j int) bool {
		ei, ej := gs[i].ExpiresAt, gs[j].ExpiresAt
		switch {
		case ei.IsZero() != ej.IsZero():
			return !ei.IsZero() // grants that expire come before those that never do
		case !ei.Equal(ej):
			return ei.Before(ej)
		default:
			return gs[i].GrantedAt.Before(gs[j].GrantedAt)
		}
	})
}
