package billing

import (
	"fmt"
	"sort"
	"strconv"
	"time"
)

// A period of a subscription is worth its dearest plan's credits, once.
//
// Stripe invoices a plan change inside a period at once (the portal's
// "always invoice" proration): lines for the unused time of the old plan
// (negative) and the remaining time of the new one, both ending where the
// period ends. A downgrade's negative total is kept as customer balance and
// pays the next invoices, so an upgrade back can be paid with amount_paid
// 0. Granting each paid invoice its plan's credits would mint a Power month
// on every Power→Basic→Power flip. So the grant of a subscription is keyed
// by (subscription, period end): each plan paid for in the period is a
// tier of that one grant, and the grant holds the credits of its dearest
// tier. An upgrade tops it up; a downgrade adds a tier and no credits; the
// next period is a new grant of the plan then current. The tiers are a set,
// so the grant is the same in any delivery order.

// Tier is one plan a subscription period was paid for.
type Tier struct {
	Plan    string `firestore:"plan" json:"plan"`
	Credits int64  `firestore:"credits" json:"credits"`
	// Payment is what paid for the tier (a payment intent, or the invoice
	// when no money moved), so that a refund or dispute finds it; Paid is
	// how much, to choose between two invoices of one plan.
	Payment string `firestore:"payment" json:"payment"`
	Paid    int64  `firestore:"paid" json:"paid"`
}

// PeriodGrantID is the id of the grant of the subscription's period that
// ends at end.
func PeriodGrantID(subscription string, end time.Time) string {
	return "sub-" + subscription + "-" + strconv.FormatInt(end.Unix(), 10)
}

// grantPeriod adds tier t to the grant of period id, which runs to end,
// creating the grant if it is not held, and tops the grant up to its
// dearest tier's credits. A tier for a plan the grant has already changes
// only which payment it names (the larger payment wins), never the credits.
//
// A tier that arrives once its period is over grants nothing: its credits
// would expire at once, and the grant it would join is gone with its
// tiers, so granting it would make the ledger depend on the order of late
// deliveries. It leaves a line of no credits in the ledger instead.
func (a *Account) grantPeriod(id string, t Tier, created, end time.Time, now time.Time) {
	if !now.Before(end) {
		a.record(Entry{ID: "late-" + id + "-" + t.Plan, Kind: EntryNote, Source: SourceSubscription, GrantID: id, At: end,
			Note: fmt.Sprintf("%s subscription invoice paid after its period ended on %s: nothing to grant", t.Plan, end.UTC().Format("2 Jan 2006"))})
		return
	}
	a.Expire(now)
	g := a.grant(id)
	if g == nil {
		a.Grants = append(a.Grants, Grant{ID: id, Source: SourceSubscription, GrantedAt: created, ExpiresAt: end})
		g = &a.Grants[len(a.Grants)-1]
	}
	if !g.addTier(t) {
		return
	}
	if created.Before(g.GrantedAt) {
		g.GrantedAt = created
	}
	top := g.Tiers[len(g.Tiers)-1]
	if top.Credits > g.Amount {
		g.Remaining += top.Credits - g.Amount
		g.Amount = top.Credits
	}
	// One entry per period, holding what the period is worth: written again
	// when a tier tops it up, so that it reads the same in any order.
	a.record(Entry{ID: "grant-" + id, Kind: EntryGrant, Source: SourceSubscription, Credits: g.Amount,
		GrantID: id, At: g.GrantedAt, ExpiresAt: end,
		Note: fmt.Sprintf("%s subscription credits until %s", top.Plan, end.UTC().Format("2 Jan 2006"))})
	for _, t := range g.Tiers {
		a.applyReversal(t.Payment, now)
	}
	a.payDebt(now) // credits that come in pay what is owed first
	a.Credits = a.Balance(now)
}

// addTier adds t to g's tiers, kept in order of credits, and reports
// whether they changed.
func (g *Grant) addTier(t Tier) bool {
	for i, have := range g.Tiers {
		if have.Plan != t.Plan {
			continue
		}
		if t.Paid < have.Paid || (t.Paid == have.Paid && t.Payment >= have.Payment) {
			return false
		}
		g.Tiers[i] = t
		return true
	}
	g.Tiers = append(g.Tiers, t)
	sort.Slice(g.Tiers, func(i, j int) bool {
		if g.Tiers[i].Credits != g.Tiers[j].Credits {
			return g.Tiers[i].Credits < g.Tiers[j].Credits
		}
		return g.Tiers[i].Plan < g.Tiers[j].Plan
	})
	return true
}

// paidBy reports whether payment bought any of g.
func (g *Grant) paidBy(payment string) bool {
	if payment == "" {
		return false
	}
	if len(g.Tiers) == 0 {
		return g.Payment == payment
	}
	for _, t := range g.Tiers {
		if t.Payment == payment {
			return true
		}
	}
	return false
}

// reversalTarget is how many credits of g the reversals seen call to take
// back: of each payment that bought part of it, the reversed fraction
// (rounded up, so a partial refund never leaves a fractional credit in the
// customer's favour) of what it bought. A tier bought what its plan adds
// to the tiers below it. It is a function of the tiers and reversals held,
// not of the order they came in. r is the reversal whose words the ledger
// shows: that of the dearest reversed tier.
func (g *Grant) reversalTarget(reversals map[string]Reversal) (target int64, r Reversal) {
	share := func(bought int64, rv Reversal) int64 {
		if rv.Charged <= 0 {
			return 0
		}
		reversed := min(rv.Refunded+rv.Disputed, rv.Charged)
		return (bought*reversed + rv.Charged - 1) / rv.Charged
	}
	if len(g.Tiers) == 0 {
		r = reversals[g.Payment]
		return share(g.Amount, r), r
	}
	var below int64
	for _, t := range g.Tiers {
		if rv, ok := reversals[t.Payment]; ok && rv.Charged > 0 {
			target += share(max(t.Credits-below, 0), rv)
			r = rv
		}
		below = max(below, t.Credits)
	}
	return target, r
}
