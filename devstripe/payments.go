package devstripe

import (
	"context"
	"fmt"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/paymeter/paymeter/billing"
)

// Payments: billing.Payments, and the customers, Checkout Sessions, charges,
// refunds and disputes behind it.

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

func (s *Stripe) newCharge(cus, pi string, inv *string, amount int64, currency string, meta map[string]string, at int64) *charge {
	ch := &charge{ID: s.newID("ch"), Object: "charge", Amount: amount, AmountCaptured: amount, Captured: true, Paid: true,
		Status: "succeeded", Currency: currency, Customer: cus, Invoice: inv, PaymentIntent: pi, Created: at, Metadata: meta}
	s.charges[ch.ID] = ch
	s.remember("charges", ch.ID)
	return ch
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
