// Package devstripe is an offline stand-in for Stripe, compiled only into
// the dev server (never into a deployed function): the whole product runs
// and is tested with no network and no Stripe account.
//
// It implements billing.Payments like the Stripe adapter, keeps customers,
// Checkout Sessions, subscriptions, invoices, charges and disputes in
// memory, serves the /dev routes of the HTTP contract (a checkout page, a
// customer portal, actions that renew, fail, refund, dispute, change or
// cancel) and, on each change, sends the event Stripe would send: API
// 2023-10-16 JSON, signed with the webhook secret the way Stripe signs, to
// the real webhook handler, retried until it is accepted. AdvanceTo renews
// the subscriptions whose period ended, like a Stripe test clock.
package devstripe

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/paymeter/paymeter/billing"
)

// Config is what the stand-in needs.
type Config struct {
	// PublicURL is the origin that serves Routes and the web app: checkout
	// and portal pages live under it, and Checkout returns the browser to
	// PublicURL+"/checkout/success" or "/checkout/cancel".
	PublicURL     string
	WebhookSecret string
	// Webhook receives the events in process (the dev server's mux, or the
	// webhook handler itself); if nil they are POSTed to WebhookURL.
	Webhook    http.Handler
	WebhookURL string
	Catalog    billing.Catalog
	Clock      billing.Clock // object and event times; the dev clock
	Log        *slog.Logger  // nil discards
	Random     io.Reader     // ids; crypto/rand.Reader if nil
	// Wait bounds how long a /dev action waits for its events to be
	// delivered before answering 202 (default 10 s).
	Wait time.Duration
}

// Stripe is the stand-in. It is safe for concurrent use; Close stops its
// delivery worker.
type Stripe struct {
	cfg    Config
	prices map[string]price // by lookup key
	client *http.Client

	mu        sync.Mutex
	customers map[string]*customer
	byUID     map[string]string
	sessions  map[string]*session
	subs      map[string]*subscription
	invoices  map[string]*invoice
	charges   map[string]*charge
	disputes  map[string]*dispute
	events    map[string]*sentEvent
	order     map[string][]string // ids by kind, in creation order
	lastEvent int64               // the created time of the newest event

	qmu   sync.Mutex
	queue []*delivery
	busy  *delivery // being delivered
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	close sync.Once
}

var _ billing.Payments = (*Stripe)(nil)

// sentEvent is an event the stand-in sent, and how its delivery went.
type sentEvent struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Created    int64  `json:"created"`
	Object     string `json:"object"`
	Deliveries int    `json:"deliveries"` // accepted deliveries
	Attempts   int    `json:"attempts"`
	LastStatus int    `json:"lastStatus"`
	LastError  string `json:"lastError,omitempty"`
	payload    []byte
}

type delivery struct {
	ev   *sentEvent
	done chan struct{}
}

// New returns the stand-in and starts its delivery worker.
func New(cfg Config) *Stripe {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Random == nil {
		cfg.Random = rand.Reader
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 10 * time.Second
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	s := &Stripe{cfg: cfg, prices: map[string]price{}, client: &http.Client{Timeout: 30 * time.Second},
		customers: map[string]*customer{}, byUID: map[string]string{}, sessions: map[string]*session{},
		subs: map[string]*subscription{}, invoices: map[string]*invoice{}, charges: map[string]*charge{},
		disputes: map[string]*dispute{}, events: map[string]*sentEvent{}, order: map[string][]string{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	for _, p := range cfg.Catalog.Plans {
		for _, pr := range p.Prices {
			key := billing.LookupKey(p.Name, pr.Kind)
			sp := price{ID: "price_dev_" + strings.ToLower(p.Name) + "_" + pr.Kind, Object: "price", Active: true,
				Currency: strings.ToLower(pr.Currency), UnitAmount: pr.Amount, LookupKey: key, Type: "one_time",
				Metadata: map[string]string{"plan": p.Name, "kind": pr.Kind}, Product: "paymeter_" + strings.ToLower(p.Name)}
			if pr.Kind == billing.PriceMonthly {
				sp.Type = "recurring"
				sp.Recurring = &recurring{Interval: "month", IntervalCount: 1, UsageType: "licensed"}
			}
			s.prices[key] = sp
		}
	}
	go s.worker()
	return s
}

// Close stops delivering events. Events not yet delivered stay undelivered.
func (s *Stripe) Close() {
	s.close.Do(func() { close(s.stop) })
	<-s.done
}

// Describe says, in one line, what the dev server pays with.
func (s *Stripe) Describe() string {
	to := s.cfg.WebhookURL
	if s.cfg.Webhook != nil || to == "" {
		to = "the webhook handler, in process"
	}
	return fmt.Sprintf("offline Stripe stand-in (no STRIPE_SECRET_KEY): checkout at %s/dev/checkout/…, state at %s/dev/state, signed events to %s",
		s.cfg.PublicURL, s.cfg.PublicURL, to)
}

func (s *Stripe) now() time.Time {
	if s.cfg.Clock != nil {
		return s.cfg.Clock.Now()
	}
	return time.Now()
}

const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newID returns a Stripe-looking id: prefix, underscore, 24 random characters.
func (s *Stripe) newID(prefix string) string {
	b := make([]byte, 24)
	n := big.NewInt(int64(len(idAlphabet)))
	for i := range b {
		k, err := rand.Int(s.cfg.Random, n)
		if err != nil {
			panic(fmt.Sprintf("devstripe: random ids: %v", err))
		}
		b[i] = idAlphabet[k.Int64()]
	}
	return prefix + "_" + string(b)
}

func (s *Stripe) remember(kind, id string) { s.order[kind] = append(s.order[kind], id) }

// ---- billing.Payments ----

// EnsureCustomer returns the customer of uid, creating it once.
func (s *Stripe) EnsureCustomer(_ context.Context, uid, email string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.byUID[uid]; ok {
		return id, nil
	}
	return s.newCustomer(uid, email).ID, nil
}

func (s *Stripe) newCustomer(uid, email string) *customer {
	c := &customer{ID: s.newID("cus"), Object: "customer", Email: email, Created: s.now().Unix(), Metadata: map[string]string{"uid": uid}}
	s.customers[c.ID] = c
	s.byUID[uid] = c.ID
	s.remember("customers", c.ID)
	return c
}

// customer returns the customer id, adopting an unknown one (an account
// that kept its customer id across dev server restarts).
func (s *Stripe) customer(id, uid string) string {
	if _, ok := s.customers[id]; ok || id == "" {
		if id == "" {
			return s.newCustomer(uid, "").ID
		}
		return id
	}
	c := &customer{ID: id, Object: "customer", Created: s.now().Unix(), Metadata: map[string]string{"uid": uid}}
	s.customers[id] = c
	s.byUID[uid] = id
	s.remember("customers", id)
	return id
}

// CheckoutSession opens a session whose page is /dev/checkout/{id}. A
// subscription session then expires the customer's other open sessions, as
// the Stripe adapter does with Stripe's expire endpoint: each becomes
// "expired", cannot be paid any more, and checkout.session.expired is sent.
func (s *Stripe) CheckoutSession(_ context.Context, req billing.CheckoutRequest) (billing.Checkout, error) {
	p, err := s.cfg.Catalog.PaidPlan(req.Plan)
	if err != nil {
		return billing.Checkout{}, err
	}
	pr, ok := s.prices[billing.LookupKey(p.Name, req.Kind)]
	if !ok {
		return billing.Checkout{}, billing.ErrInvalidPlan
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	cs := &session{ID: s.newID("cs_test"), Object: "checkout.session", Mode: "payment", Status: "open", PaymentStatus: "unpaid",
		Customer: s.customer(req.CustomerID, req.UID), ClientReferenceID: req.UID,
		Metadata:    map[string]string{"uid": req.UID, "plan": p.Name, "kind": req.Kind},
		AmountTotal: pr.UnitAmount, Currency: pr.Currency,
		SuccessURL: s.cfg.PublicURL + "/checkout/success", CancelURL: s.cfg.PublicURL + "/checkout/cancel",
		Created: now.Unix(), ExpiresAt: now.Add(24 * time.Hour).Unix(), price: pr}
	if req.Kind == billing.PriceMonthly {
		cs.Mode = "subscription"
	}
	url := s.cfg.PublicURL + "/dev/checkout/" + cs.ID
	cs.URL = &url
	s.sessions[cs.ID] = cs
	s.remember("sessions", cs.ID)
	var ds []*delivery
	if cs.Mode == "subscription" {
		for _, id := range s.order["sessions"] {
			if o := s.sessions[id]; o.ID != cs.ID && o.Customer == cs.Customer && o.Status == "open" {
				ds = append(ds, s.expire(o, now.Unix()))
			}
		}
	}
	s.enqueue(ds...) // s.mu is held; enqueue takes only the queue's lock
	return billing.Checkout{SessionID: cs.ID, URL: url}, nil
}

// expire ends an open session unpaid, as POST
// /v1/checkout/sessions/{id}/expire does: it can no longer be completed.
func (s *Stripe) expire(cs *session, at int64) *delivery {
	cs.Status = "expired"
	return s.emit(stripe.EventTypeCheckoutSessionExpired, cs.ID, cs, at)
}

// CancelSubscriptions ends at once every subscription of the customer that
// has not ended; the deletion events are sent in the background, as
// Stripe sends them.
func (s *Stripe) CancelSubscriptions(_ context.Context, customerID string) ([]string, error) {
	s.mu.Lock()
	var ids []string
	var ds []*delivery
	for _, id := range s.order["subscriptions"] {
		sub := s.subs[id]
		if sub.Customer != customerID || ended(sub) {
			continue
		}
		ds = append(ds, s.endSubscription(sub))
		ids = append(ids, id)
	}
	s.mu.Unlock()
	s.enqueue(ds...)
	return ids, nil
}

// PortalSession returns the stand-in's portal page of the customer.
func (s *Stripe) PortalSession(_ context.Context, customerID string) (string, error) {
	return s.cfg.PublicURL + "/dev/portal/" + customerID, nil
}

// Charge returns a charge the stand-in made; billing.ErrNotFound otherwise.
func (s *Stripe) Charge(_ context.Context, id string) (billing.Charge, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.charges[id]
	if !ok {
		return billing.Charge{}, fmt.Errorf("charge %s: %w", id, billing.ErrNotFound)
	}
	return billing.Charge{ID: ch.ID, CustomerID: ch.Customer, Payment: ch.PaymentIntent, Amount: ch.Amount, Refunded: ch.AmountRefunded}, nil
}

// ---- the lifecycle, as Stripe runs it ----

func ended(sub *subscription) bool {
	return sub.Status == "canceled" || sub.Status == "incomplete_expired"
}

func month(t int64) int64 { return time.Unix(t, 0).UTC().AddDate(0, 1, 0).Unix() }

func (s *Stripe) planPrice(sub *subscription) price { return sub.Items.Data[0].Price }

// complete pays an open session: a charge for a one-off purchase; a
// subscription with its first paid invoice otherwise. With delayed, a
// one-off purchase completes unpaid, as a bank debit does: its payment
// succeeds or fails later (settleDelayed).
func (s *Stripe) complete(id string, delayed bool) ([]*delivery, error) {
	cs, ok := s.sessions[id]
	if !ok {
		return nil, errNotFound("checkout session", id)
	}
	if cs.Status != "open" {
		return nil, errConflict("checkout session %s is %s", id, cs.Status)
	}
	now := s.now().Unix()
	if delayed {
		if cs.Mode != "payment" {
			return nil, errConflict("the stand-in takes a delayed payment for one-off purchases only")
		}
		pi := s.newID("pi")
		cs.PaymentIntent = &pi
		cs.Status, cs.PaymentStatus, cs.awaiting = "complete", "unpaid", true
		return []*delivery{s.emit(stripe.EventTypeCheckoutSessionCompleted, cs.ID, cs, now)}, nil
	}
	cs.Status, cs.PaymentStatus = "complete", "paid"
	if cs.Mode == "payment" {
		pi := s.newID("pi")
		cs.PaymentIntent = &pi
		s.newCharge(cs.Customer, pi, nil, cs.AmountTotal, cs.Currency, cs.Metadata, now)
		return []*delivery{s.emit(stripe.EventTypeCheckoutSessionCompleted, cs.ID, cs, now)}, nil
	}
	sub := &subscription{ID: s.newID("sub"), Object: "subscription", Customer: cs.Customer, Status: "active",
		CurrentPeriodStart: now, CurrentPeriodEnd: month(now), BillingCycleAnchor: now, Created: now, StartDate: now,
		Currency: cs.Currency, Metadata: cs.Metadata}
	sub.Items = newList("/v1/subscription_items?subscription="+sub.ID, subscriptionItem{ID: s.newID("si"), Object: "subscription_item",
		Price: cs.price, Quantity: 1, Subscription: sub.ID, Created: now})
	s.subs[sub.ID] = sub
	s.remember("subscriptions", sub.ID)
	cs.Subscription = &sub.ID
	inv := s.newInvoice(sub, "subscription_create", now, []lineItem{s.line(sub, cs.price, cs.price.UnitAmount, now, month(now), false)})
	s.pay(inv, now)
	return []*delivery{
		s.emit(stripe.EventTypeCheckoutSessionCompleted, cs.ID, cs, now),
		s.emit(stripe.EventTypeInvoicePaid, inv.ID, inv, now),
	}, nil
}

// settleDelayed ends the delayed payment of a session that completed
// unpaid: it succeeds (a charge; the session is paid) or fails (the
// session stays unpaid), with the event Stripe sends for each.
func (s *Stripe) settleDelayed(id string, succeeded bool) ([]*delivery, error) {
	cs, ok := s.sessions[id]
	if !ok {
		return nil, errNotFound("checkout session", id)
	}
	if !cs.awaiting {
		return nil, errConflict("checkout session %s has no delayed payment pending", id)
	}
	now := s.now().Unix()
	cs.awaiting = false
	if !succeeded {
		return []*delivery{s.emit(stripe.EventTypeCheckoutSessionAsyncPaymentFailed, cs.ID, cs, now)}, nil
	}
	cs.PaymentStatus = "paid"
	s.newCharge(cs.Customer, *cs.PaymentIntent, nil, cs.AmountTotal, cs.Currency, cs.Metadata, now)
	return []*delivery{s.emit(stripe.EventTypeCheckoutSessionAsyncPaymentSucceeded, cs.ID, cs, now)}, nil
}

// line is an invoice line for p's plan over [start, end); a proration line
// says what part of the period it is for.
func (s *Stripe) line(sub *subscription, p price, amount, start, end int64, proration bool) lineItem {
	desc := "1 × " + p.Metadata["plan"]
	if proration {
		after := time.Unix(start, 0).UTC().Format("2 Jan 2006")
		desc = "Remaining time on " + p.Metadata["plan"] + " after " + after
		if amount < 0 {
			desc = "Unused time on " + p.Metadata["plan"] + " after " + after
		}
	}
	return lineItem{ID: s.newID("il"), Object: "line_item", Amount: amount, Currency: p.Currency, Description: desc,
		Period: period{Start: start, End: end}, Price: p, Proration: proration, Quantity: 1, Subscription: sub.ID,
		Type: "subscription", Metadata: map[string]string{}}
}

// newInvoice finalizes an invoice of lines as Stripe does: the customer's
// credit balance pays what it can of a positive total, and a negative total
// is not refunded but added to that credit, so the invoice is due 0.
func (s *Stripe) newInvoice(sub *subscription, reason string, at int64, lines []lineItem) *invoice {
	var total int64
	for _, l := range lines {
		total += l.Amount
	}
	cus := s.customers[sub.Customer]
	var starting int64
	if cus != nil {
		starting = cus.Balance
	}
	ending := starting + total
	due := max(ending, 0)
	if starting > 0 { // a debit balance is owed on top of the total; none arises here
		due = max(total, 0) + starting
	}
	ending = min(ending, 0)
	if cus != nil {
		cus.Balance = ending
	}
	inv := &invoice{ID: s.newID("in"), Object: "invoice", Customer: sub.Customer, Subscription: sub.ID,
		SubscriptionDetails: subscriptionDetails{Metadata: sub.Metadata}, Status: "open", AmountDue: due,
		AmountRemaining: due, Subtotal: total, Total: total, StartingBalance: starting, EndingBalance: ending,
		Currency: sub.Currency, BillingReason: reason,
		PeriodStart: lines[len(lines)-1].Period.Start, PeriodEnd: lines[len(lines)-1].Period.Start, Created: at}
	inv.Lines = newList("/v1/invoices/"+inv.ID+"/lines", lines...)
	s.invoices[inv.ID] = inv
	s.remember("invoices", inv.ID)
	sub.LatestInvoice = &inv.ID
	return inv
}

func (s *Stripe) pay(inv *invoice, at int64) {
	inv.Status, inv.Paid, inv.AttemptCount = "paid", true, 1
	inv.AmountPaid, inv.AmountRemaining = inv.AmountDue, 0
	if inv.AmountDue == 0 {
		return
	}
	pi := s.newID("pi")
	inv.PaymentIntent = &pi
	ch := s.newCharge(inv.Customer, pi, &inv.ID, inv.AmountDue, inv.Currency, map[string]string{}, at)
	inv.Charge = &ch.ID
}

func (s *Stripe) newCharge(cus, pi string, inv *string, amount int64, currency string, meta map[string]string, at int64) *charge {
	ch := &charge{ID: s.newID("ch"), Object: "charge", Amount: amount, AmountCaptured: amount, Captured: true, Paid: true,
		Status: "succeeded", Currency: currency, Customer: cus, Invoice: inv, PaymentIntent: pi, Created: at, Metadata: meta}
	s.charges[ch.ID] = ch
	s.remember("charges", ch.ID)
	return ch
}

// renew starts the subscription's next period with a paid invoice, at at.
func (s *Stripe) renew(sub *subscription, at int64) *delivery {
	start := sub.CurrentPeriodEnd
	sub.CurrentPeriodStart, sub.CurrentPeriodEnd, sub.Status = start, month(start), "active"
	p := s.planPrice(sub)
	inv := s.newInvoice(sub, "subscription_cycle", at, []lineItem{s.line(sub, p, p.UnitAmount, start, sub.CurrentPeriodEnd, false)})
	s.pay(inv, at)
	return s.emit(stripe.EventTypeInvoicePaid, inv.ID, inv, at)
}

// fail starts the next period with an invoice whose payment failed.
func (s *Stripe) fail(sub *subscription, at int64) *delivery {
	start := sub.CurrentPeriodEnd
	sub.CurrentPeriodStart, sub.CurrentPeriodEnd, sub.Status = start, month(start), "past_due"
	p := s.planPrice(sub)
	inv := s.newInvoice(sub, "subscription_cycle", at, []lineItem{s.line(sub, p, p.UnitAmount, start, sub.CurrentPeriodEnd, false)})
	inv.AttemptCount = 1
	return s.emit(stripe.EventTypeInvoicePaymentFailed, inv.ID, inv, at)
}

// change moves the subscription to another plan as the portal does with
// proration "always invoice": the period and its billing cycle anchor stay,
// and an invoice at once holds a credit for the unused time of the old plan
// and a charge for the remaining time on the new one, both ending where the
// period ends. A downgrade's negative total becomes customer credit, which
// pays the next invoices (the invoice is paid with amount_paid 0).
func (s *Stripe) change(sub *subscription, plan string, at int64) ([]*delivery, error) {
	if ended(sub) {
		return nil, errConflict("subscription %s has ended", sub.ID)
	}
	np, ok := s.prices[billing.LookupKey(plan, billing.PriceMonthly)]
	if !ok {
		return nil, billing.ErrInvalidPlan
	}
	old := s.planPrice(sub)
	if old.ID == np.ID {
		return nil, errConflict("subscription %s is already on %s", sub.ID, plan)
	}
	// The share of the period still to run; all of it when the period was
	// renewed ahead of the clock by hand (/dev/subscriptions/{id}/renew).
	length := max(sub.CurrentPeriodEnd-sub.CurrentPeriodStart, 1)
	left := min(max(sub.CurrentPeriodEnd-at, 0), length)
	end := sub.CurrentPeriodEnd
	var lines []lineItem
	if sub.Status == "active" { // past due: the unused time was never paid for
		lines = append(lines, s.line(sub, old, -old.UnitAmount*left/length, at, end, true))
	}
	lines = append(lines, s.line(sub, np, np.UnitAmount*left/length, at, end, true))
	sub.Items.Data[0].Price = np
	sub.Status, sub.CancelAtPeriodEnd, sub.CancelAt = "active", false, nil
	updated := s.emit(stripe.EventTypeCustomerSubscriptionUpdated, sub.ID, sub, at)
	inv := s.newInvoice(sub, "subscription_update", at, lines)
	s.pay(inv, at)
	return []*delivery{updated, s.emit(stripe.EventTypeInvoicePaid, inv.ID, inv, at)}, nil
}

// cancelAtPeriodEnd marks the subscription to end when its period does.
func (s *Stripe) cancelAtPeriodEnd(sub *subscription, at int64) (*delivery, error) {
	if ended(sub) {
		return nil, errConflict("subscription %s has ended", sub.ID)
	}
	end := sub.CurrentPeriodEnd
	sub.CancelAtPeriodEnd, sub.CancelAt, sub.CanceledAt = true, &end, &at
	return s.emit(stripe.EventTypeCustomerSubscriptionUpdated, sub.ID, sub, at), nil
}

func (s *Stripe) endSubscription(sub *subscription) *delivery {
	return s.endAt(sub, s.now().Unix())
}

func (s *Stripe) endAt(sub *subscription, at int64) *delivery {
	sub.Status = "canceled"
	sub.EndedAt = &at
	if sub.CanceledAt == nil {
		sub.CanceledAt = &at
	}
	return s.emit(stripe.EventTypeCustomerSubscriptionDeleted, sub.ID, sub, at)
}

func (s *Stripe) refund(ch *charge, amount int64, at int64) (*delivery, error) {
	left := ch.Amount - ch.AmountRefunded
	if amount <= 0 {
		amount = left
	}
	if left <= 0 || amount > left {
		return nil, errConflict("charge %s has %d left to refund", ch.ID, left)
	}
	ch.AmountRefunded += amount
	ch.Refunded = ch.AmountRefunded == ch.Amount
	return s.emit(stripe.EventTypeChargeRefunded, ch.ID, ch, at), nil
}

func (s *Stripe) dispute(ch *charge, at int64) (*delivery, error) {
	if ch.Disputed {
		return nil, errConflict("charge %s is already disputed", ch.ID)
	}
	ch.Disputed = true
	d := &dispute{ID: s.newID("dp"), Object: "dispute", Amount: ch.Amount - ch.AmountRefunded, Charge: ch.ID,
		PaymentIntent: ch.PaymentIntent, Currency: ch.Currency, Reason: "fraudulent", Status: "needs_response", Created: at,
		Metadata: map[string]string{}}
	s.disputes[d.ID] = d
	s.remember("disputes", d.ID)
	return s.emit(stripe.EventTypeChargeDisputeCreated, d.ID, d, at), nil
}

// AdvanceTo runs every subscription to now, like a Stripe test clock: each
// period that has ended renews with a paid invoice dated at its end, or
// ends the subscription if it was to cancel at period end. It returns once
// those events are delivered, or with ctx's error.
func (s *Stripe) AdvanceTo(ctx context.Context, now time.Time) error {
	t := now.Unix()
	s.mu.Lock()
	var ds []*delivery
	for _, id := range s.order["subscriptions"] {
		sub := s.subs[id]
		for n := 0; !ended(sub) && sub.CurrentPeriodEnd <= t && n < 120; n++ {
			if sub.CancelAtPeriodEnd {
				ds = append(ds, s.endAt(sub, sub.CurrentPeriodEnd))
				break
			}
			ds = append(ds, s.renew(sub, sub.CurrentPeriodEnd))
		}
	}
	s.mu.Unlock()
	s.enqueue(ds...)
	return wait(ctx, ds)
}

// ---- events and their delivery ----

// emit records the event of obj as Stripe would send it now: the object as
// it is at this moment. Call with s.mu held; enqueue the delivery after.
//
// Event times only move forward, a second at a time at least, as Stripe's
// do between one action and the next: two events of one second could not be
// told apart by time.
func (s *Stripe) emit(typ stripe.EventType, objectID string, obj any, at int64) *delivery {
	at = max(at, s.lastEvent+1)
	s.lastEvent = at
	ev := event{ID: s.newID("evt"), Object: "event", APIVersion: stripe.APIVersion, Created: at, Data: eventData{Object: obj},
		PendingWebhooks: 1, Type: string(typ)}
	payload, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("devstripe: encode %s: %v", typ, err)) // our own types always encode
	}
	se := &sentEvent{ID: ev.ID, Type: ev.Type, Created: at, Object: objectID, payload: payload}
	s.events[se.ID] = se
	s.remember("events", se.ID)
	return &delivery{ev: se, done: make(chan struct{})}
}

func (s *Stripe) enqueue(ds ...*delivery) {
	if len(ds) == 0 {
		return
	}
	s.qmu.Lock()
	s.queue = append(s.queue, ds...)
	s.qmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Stripe) next() (*delivery, bool) {
	for {
		s.qmu.Lock()
		if len(s.queue) > 0 {
			d := s.queue[0]
			s.queue = s.queue[1:]
			s.busy = d
			s.qmu.Unlock()
			return d, true
		}
		s.qmu.Unlock()
		select {
		case <-s.wake:
		case <-s.stop:
			return nil, false
		}
	}
}

// worker delivers events one at a time, in the order they were made,
// retrying each with backoff until the webhook accepts it.
func (s *Stripe) worker() {
	defer close(s.done)
	for {
		d, ok := s.next()
		if !ok {
			return
		}
		backoff := 50 * time.Millisecond
		for !s.send(d.ev) {
			select {
			case <-s.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
		s.qmu.Lock()
		s.busy = nil
		s.qmu.Unlock()
		close(d.done)
	}
}

// send delivers one event, signed now with wall-clock time (the webhook
// checks the signature's age against real time, whatever the dev clock
// says). It reports whether the webhook answered 2xx.
func (s *Stripe) send(ev *sentEvent) bool {
	s.mu.Lock()
	payload := ev.payload
	ev.Attempts++
	s.mu.Unlock()
	signed := stripeSignature(payload, s.cfg.WebhookSecret, time.Now())
	status, err := s.post(payload, signed)
	s.mu.Lock()
	defer s.mu.Unlock()
	ev.LastStatus, ev.LastError = status, ""
	if err != nil {
		ev.LastError = err.Error()
	}
	ok := err == nil && status >= 200 && status < 300
	if ok {
		ev.Deliveries++
	} else {
		s.cfg.Log.Warn("devstripe: webhook refused an event; retrying", "event", ev.ID, "type", ev.Type, "status", status, "err", err)
	}
	return ok
}

func (s *Stripe) post(payload []byte, signature string) (int, error) {
	if s.cfg.Webhook != nil {
		req, err := http.NewRequest(http.MethodPost, "/api/stripe/webhook", strings.NewReader(string(payload)))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("Stripe-Signature", signature)
		rec := &statusWriter{header: http.Header{}}
		s.cfg.Webhook.ServeHTTP(rec, req)
		return rec.code(), nil
	}
	if s.cfg.WebhookURL == "" {
		return 0, errors.New("no webhook to deliver to")
	}
	req, err := http.NewRequest(http.MethodPost, s.cfg.WebhookURL, strings.NewReader(string(payload)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", signature)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// statusWriter is a ResponseWriter that keeps only the status.
type statusWriter struct {
	header http.Header
	status int
}

func (w *statusWriter) Header() http.Header         { return w.header }
func (w *statusWriter) Write(b []byte) (int, error) { w.WriteHeader(http.StatusOK); return len(b), nil }
func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// wait returns when every delivery is done, or with ctx's error.
func wait(ctx context.Context, ds []*delivery) error {
	for _, d := range ds {
		select {
		case <-d.done:
		case <-ctx.Done():
			return fmt.Errorf("deliver %s: %w", d.ev.ID, ctx.Err())
		}
	}
	return nil
}

// Drain returns once every event sent so far has been delivered, or with
// ctx's error.
func (s *Stripe) Drain(ctx context.Context) error {
	s.qmu.Lock()
	pending := append([]*delivery(nil), s.queue...)
	s.qmu.Unlock()
	if err := wait(ctx, pending); err != nil {
		return err
	}
	// The one being delivered, if any, left the queue already: wait for the
	// worker to come back for more.
	for {
		s.qmu.Lock()
		idle := len(s.queue) == 0 && s.busy == nil
		s.qmu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// resend delivers an event again, as the Stripe dashboard can.
func (s *Stripe) resend(id string) (*delivery, error) {
	ev, ok := s.events[id]
	if !ok {
		return nil, errNotFound("event", id)
	}
	return &delivery{ev: ev, done: make(chan struct{})}, nil
}

// Payload returns the body the stand-in sends for an event, for tests that
// deliver it themselves.
func (s *Stripe) Payload(eventID string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev, ok := s.events[eventID]
	if !ok {
		return nil, false
	}
	return ev.payload, true
}

// EventIDs returns the ids of the events sent so far, oldest first.
func (s *Stripe) EventIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order["events"]...)
}

func errNotFound(what, id string) error {
	return billing.Errorf(billing.CodeNotFound, "no %s %s", what, id)
}

func errConflict(format string, args ...any) error {
	return billing.Errorf(billing.CodeConflict, format, args...)
}
