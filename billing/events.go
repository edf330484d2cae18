package billing

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Billing events, in domain terms. The payment adapter decodes a provider's
// webhook event into an Event; Account.Apply applies it.
//
// Each event must leave the same account whatever order, and however often,
// the events arrive:
//   - grants are keyed by what paid for them (the checkout session; for a
//     subscription, the period, whose grant is worth its dearest plan:
//     period.go), so a second delivery adds nothing;
//   - refunds and disputes are cumulative figures per payment (Reverse), so
//     they converge whether they arrive before or after the grant;
//   - the subscription is a snapshot that an event replaces only if it is
//     newer: ordered by the time the provider created the event (the time
//     the object reached that state), ties broken by the snapshot itself
//     (a later status in the lifecycle wins, then the later period end, and
//     so on), so the newest state wins in any delivery order. A late event
//     still adds its grant; it never brings back an older plan or status.
//   - a customer has one live subscription (opening a subscription checkout
//     expires the customer's other open sessions), but two checkouts paid
//     in a race give two. The account keeps the newest snapshot of each
//     subscription and follows a live one: the dearest plan, then the newest
//     snapshot. So the end of one subscription never replaces another that
//     is live, and the account is on Free only when none is live. The
//     duplicate shows in the provider's portal, and the cancel endpoint
//     ends every one.

// Subscription statuses, as the provider names them.
const (
	StatusIncomplete        = "incomplete"
	StatusIncompleteExpired = "incomplete_expired"
	StatusTrialing          = "trialing"
	StatusActive            = "active"
	StatusPastDue           = "past_due"
	StatusUnpaid            = "unpaid"
	StatusPaused            = "paused"
	StatusCanceled          = "canceled"
)

// statusRank orders statuses along the lifecycle, to break ties between
// snapshots of the same second: the later status wins.
var statusRank = map[string]int{
	StatusIncomplete:        1,
	StatusTrialing:          2,
	StatusActive:            3,
	StatusPastDue:           4,
	StatusUnpaid:            5,
	StatusPaused:            6,
	StatusIncompleteExpired: 7,
	StatusCanceled:          8,
}

// Event is one verified event of the payment provider.
type Event struct {
	ID      string    // the provider's event id, recorded so it applies once
	Type    string    // the provider's event type, e.g. "invoice.paid"
	Created time.Time // when the provider created it
	// CustomerID is the provider customer the event is about; UID the
	// account named in the object's metadata, if any. Either finds the
	// account.
	CustomerID string
	UID        string
	// Change is what the event does: one of CheckoutCompleted,
	// CheckoutPaymentFailed, InvoicePaid, InvoiceFailed, SubscriptionChanged
	// or PaymentReversed; nil for an event Paymeter ignores.
	Change any
}

// CheckoutCompleted is a completed checkout: a one-off purchase (Kind
// PriceInstant), or the start of a subscription (PriceMonthly). A payment
// that settles later (a bank debit) completes unpaid; the same session then
// arrives again paid when the money is in (Stripe's
// checkout.session.async_payment_succeeded), and grants then, once.
type CheckoutCompleted struct {
	SessionID      string
	Kind           string
	Plan           string
	SubscriptionID string
	Payment        string // the payment intent of a one-off purchase
	Paid           bool   // the money is in (not an asynchronous payment still pending)
	Created        time.Time
}

// CheckoutPaymentFailed is a checkout whose delayed payment failed
// (Stripe's checkout.session.async_payment_failed): nothing is granted, and
// the ledger says so.
type CheckoutPaymentFailed struct {
	SessionID string
	Kind      string
	Plan      string
	Created   time.Time
}

// InvoicePaid is a paid subscription invoice: the first, a renewal, or a
// plan change. It buys one grant of its plan's credits for its period.
type InvoicePaid struct {
	InvoiceID      string
	SubscriptionID string
	Plan           string
	PeriodStart    time.Time
	PeriodEnd      time.Time
	Payment        string // the payment intent, which refunds and disputes name
	Amount         int64
	Created        time.Time
}

// InvoiceFailed is a subscription invoice whose payment failed: the
// subscription is past due and nothing is granted.
type InvoiceFailed struct {
	InvoiceID      string
	SubscriptionID string
	Plan           string
	PeriodEnd      time.Time
	Created        time.Time
}

// SubscriptionChanged is the whole subscription as the provider holds it
// after a change (a plan change or cancel-at-period-end from the portal, a
// status change) or its end (Status canceled).
type SubscriptionChanged struct {
	SubscriptionID    string
	Plan              string
	Status            string
	CurrentPeriodEnd  time.Time
	CancelAtPeriodEnd bool
	Created           time.Time
}

// PaymentReversed is money taken back from a payment by a refund or a
// dispute. The figures are cumulative, in the smallest currency unit.
type PaymentReversed struct {
	ChargeID string
	Payment  string
	Charged  int64
	Refunded int64
	Disputed int64
	Created  time.Time
}

// Apply applies e to the account at now. An event naming a plan that is
// not a paid plan of c changes nothing and returns an ErrInvalidPlan error;
// any other event, including one of a type Paymeter ignores, returns nil.
func (a *Account) Apply(e Event, c Catalog, now time.Time) error {
	var err error
	switch ch := e.Change.(type) {
	case CheckoutCompleted:
		err = a.CompleteCheckout(ch, c, now)
	case CheckoutPaymentFailed:
		err = a.FailCheckout(ch, c)
	case InvoicePaid:
		err = a.PayInvoice(ch, c, now)
	case InvoiceFailed:
		err = a.FailInvoice(ch, c, now)
	case SubscriptionChanged:
		err = a.ChangeSubscription(ch, c, now)
	case PaymentReversed:
		a.ReversePayment(ch, now)
	}
	a.Expire(now)
	return err
}

// CompleteCheckout grants a paid one-off purchase its credits, which never
// expire, or starts following the subscription that a checkout created.
func (a *Account) CompleteCheckout(e CheckoutCompleted, c Catalog, now time.Time) error {
	p, err := c.PaidPlan(e.Plan)
	if err != nil {
		return fmt.Errorf("checkout %s: %w", e.SessionID, err)
	}
	switch e.Kind {
	case PriceInstant:
		if !e.Paid {
			return nil
		}
		a.AddGrant(Grant{ID: e.SessionID, Source: SourceTopUp, Amount: p.Credits, Remaining: p.Credits,
			GrantedAt: e.Created, Payment: e.Payment}, now, fmt.Sprintf("%s credits bought once", p.Name))
	case PriceMonthly:
		if e.SubscriptionID == "" {
			return nil
		}
		status := StatusActive
		if !e.Paid {
			status = StatusIncomplete
		}
		a.observe(Subscription{ID: e.SubscriptionID, Plan: p.Name, Status: status, UpdatedAt: e.Created}, c, now)
	}
	return nil
}

// FailCheckout records in the ledger that a checkout's delayed payment
// failed. It grants nothing and takes nothing: a checkout grants only once
// paid.
func (a *Account) FailCheckout(e CheckoutPaymentFailed, c Catalog) error {
	p, err := c.PaidPlan(e.Plan)
	if err != nil {
		return fmt.Errorf("checkout %s: %w", e.SessionID, err)
	}
	what := fmt.Sprintf("%s credits bought once", p.Name)
	if e.Kind == PriceMonthly {
		what = fmt.Sprintf("%s subscription", p.Name)
	}
	a.record(Entry{ID: "payment-failed-" + e.SessionID, Kind: EntryNote, Credits: 0, At: e.Created,
		Note: fmt.Sprintf("Payment failed: %s not granted", what)})
	a.notify(Notice{ID: "payment-failed-" + e.SessionID, Type: NoticePaymentFailed, Created: e.Created,
		Data: NoticeData{Plan: p.Name, Reason: fmt.Sprintf("%s not granted", what)}})
	return nil
}

// PayInvoice adds a paid subscription invoice's plan to the grant of the
// period it paid for (period.go): the period's credits become its dearest
// plan's, expiring when the period ends. It keeps the subscription active
// on that plan unless a newer state is known. It never cancels anything.
func (a *Account) PayInvoice(e InvoicePaid, c Catalog, now time.Time) error {
	p, err := c.PaidPlan(e.Plan)
	if err != nil {
		return fmt.Errorf("invoice %s: %w", e.InvoiceID, err)
	}
	payment := e.Payment
	if payment == "" {
		payment = e.InvoiceID
	}
	if e.SubscriptionID == "" {
		return nil // not a subscription's invoice: Paymeter sells no other kind
	}
	a.grantPeriod(PeriodGrantID(e.SubscriptionID, e.PeriodEnd),
		Tier{Plan: p.Name, Credits: p.Credits, Payment: payment, Paid: e.Amount}, e.Created, e.PeriodEnd, now)
	a.observe(Subscription{ID: e.SubscriptionID, Plan: p.Name, Status: StatusActive,
		CurrentPeriodEnd: e.PeriodEnd, UpdatedAt: e.Created}, c, now)
	return nil
}

// FailInvoice marks the subscription past due, unless a newer state is
// known. It grants nothing.
func (a *Account) FailInvoice(e InvoiceFailed, c Catalog, now time.Time) error {
	p, err := c.PaidPlan(e.Plan)
	if err != nil {
		return fmt.Errorf("invoice %s: %w", e.InvoiceID, err)
	}
	if e.SubscriptionID != "" {
		a.observe(Subscription{ID: e.SubscriptionID, Plan: p.Name, Status: StatusPastDue,
			CurrentPeriodEnd: e.PeriodEnd, UpdatedAt: e.Created}, c, now)
	}
	a.notify(Notice{ID: "payment-failed-" + e.InvoiceID, Type: NoticePaymentFailed, Created: e.Created,
		Data: NoticeData{Plan: p.Name, Invoice: e.InvoiceID, Subscription: e.SubscriptionID, PeriodEnd: e.PeriodEnd,
			Balance: a.Balance(now), Reason: fmt.Sprintf("the %s subscription's renewal was not paid", p.Name)}})
	return nil
}

// ChangeSubscription takes the provider's view of the subscription, unless a
// newer state is known. A subscription that has ended moves the account
// back to Free, resuming the Free grants from the next period.
func (a *Account) ChangeSubscription(e SubscriptionChanged, c Catalog, now time.Time) error {
	plan := e.Plan
	if p, err := c.PaidPlan(plan); err == nil {
		plan = p.Name
	} else if e.Status != StatusCanceled && e.Status != StatusIncompleteExpired {
		return fmt.Errorf("subscription %s: %w", e.SubscriptionID, err)
	}
	s := Subscription{ID: e.SubscriptionID, Plan: plan, Status: e.Status,
		CurrentPeriodEnd: e.CurrentPeriodEnd, CancelAtPeriodEnd: e.CancelAtPeriodEnd, UpdatedAt: e.Created}
	if a.observe(s, c, now) {
		a.notifySubscription(s, now)
	}
	return nil
}

// ReversePayment takes back what a refund or dispute took from a payment
// (see Reverse). It returns the credits taken back by this call.
func (a *Account) ReversePayment(e PaymentReversed, now time.Time) int64 {
	return a.Reverse(e.Payment, e.Charged, e.Refunded, e.Disputed, now)
}

// CancelSubscription records that the account's subscriptions were
// cancelled (by the cancel endpoint, after the provider cancelled every one)
// and moves the account to Free. It grants nothing, however often it is
// called: the Free grants resume from the next period.
func (a *Account) CancelSubscription(now time.Time) {
	end := func(s Subscription) Subscription {
		if s.Status == StatusCanceled {
			return s
		}
		s.Status = StatusCanceled
		s.CancelAtPeriodEnd = false
		if now.After(s.UpdatedAt) {
			s.UpdatedAt = now
		}
		a.notifySubscription(s, now)
		return s
	}
	if s := a.Subscription; s != nil {
		ended := end(*s)
		a.Subscription = &ended
	}
	for i, s := range a.OtherSubscriptions {
		if s.Active() {
			a.OtherSubscriptions[i] = end(s)
		}
	}
	a.SetPlan(PlanFree, now)
}

// keepEnded is how long the snapshot of an ended subscription that the
// account no longer follows is kept: as long as the store remembers event
// ids, so that a late event about it is recognised as old.
const keepEnded = 30 * 24 * time.Hour

// observe records snapshot s of its subscription if it is newer than the
// one known for that subscription, then follows the subscription that
// entitles the account most (see follows) and moves the account to its
// plan, or to Free if none is live. It reports whether s was taken.
func (a *Account) observe(s Subscription, c Catalog, now time.Time) bool {
	all := a.OtherSubscriptions
	if a.Subscription != nil {
		all = append([]Subscription{*a.Subscription}, all...)
	}
	i := slices.IndexFunc(all, func(k Subscription) bool { return k.ID == s.ID })
	switch {
	case i < 0:
		all = append(all, s)
	case newer(s, all[i]):
		all[i] = s
	default:
		return false
	}
	best := 0
	for j := range all {
		if follows(all[j], all[best], c) {
			best = j
		}
	}
	followed := all[best]
	a.Subscription = &followed
	a.OtherSubscriptions = nil
	for j, k := range all {
		if j != best && (k.Active() || now.Sub(k.UpdatedAt) < keepEnded) {
			a.OtherSubscriptions = append(a.OtherSubscriptions, k)
		}
	}
	slices.SortFunc(a.OtherSubscriptions, func(x, y Subscription) int { return strings.Compare(x.ID, y.ID) })
	if followed.Active() {
		a.SetPlan(followed.Plan, now)
		return true
	}
	if a.Plan != PlanFree {
		a.SetPlan(PlanFree, now)
		return true
	}
	// Already on Free: the end arrived before the events it ends, or after
	// the cancel endpoint. Resume the chain as moving to Free would, so that
	// every delivery order leaves the same next grant.
	if a.FreeAwaitsVerifiedEmail {
		return true
	}
	a.NextFreePeriod = max(a.NextFreePeriod, a.FreePeriodAt(now)+1)
	a.NextGrantAt = a.periodStart(a.NextFreePeriod)
	return true
}

// follows reports whether the account follows subscription s rather than
// cur: a live one before one that has ended; of two live ones, the dearer
// plan (by credits); otherwise the newer snapshot.
func follows(s, cur Subscription, c Catalog) bool {
	if s.Active() != cur.Active() {
		return s.Active()
	}
	if s.Active() {
		ps, _ := c.Plan(s.Plan)
		pc, _ := c.Plan(cur.Plan)
		if ps.Credits != pc.Credits {
			return ps.Credits > pc.Credits
		}
	}
	return newer(s, cur)
}

// newer reports whether snapshot s is strictly after cur, in a total order:
// the event time, then the lifecycle rank of the status, then the period
// end, cancel-at-period-end, plan and id.
func newer(s, cur Subscription) bool {
	switch {
	case !s.UpdatedAt.Equal(cur.UpdatedAt):
		return s.UpdatedAt.After(cur.UpdatedAt)
	case statusRank[s.Status] != statusRank[cur.Status]:
		return statusRank[s.Status] > statusRank[cur.Status]
	case !s.CurrentPeriodEnd.Equal(cur.CurrentPeriodEnd):
		return s.CurrentPeriodEnd.After(cur.CurrentPeriodEnd)
	case s.CancelAtPeriodEnd != cur.CancelAtPeriodEnd:
		return s.CancelAtPeriodEnd
	case s.Plan != cur.Plan:
		return s.Plan > cur.Plan
	default:
		return s.ID > cur.ID
	}
}
