package devstripe

import (
	"context"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/paymeter/paymeter/billing"
)

// The lifecycle of subscriptions, as Stripe runs it: invoices, renewals,
// failed payments, plan changes with proration, cancellation, and the
// test clock.

func ended(sub *subscription) bool {
	return sub.Status == "canceled" || sub.Status == "incomplete_expired"
}

func month(t int64) int64 { return time.Unix(t, 0).UTC().AddDate(0, 1, 0).Unix() }

func (s *Stripe) planPrice(sub *subscription) price { return sub.Items.Data[0].Price }

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
