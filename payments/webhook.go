package payments

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/paymeter/paymeter/billing"
)

// Tolerance is how old a signature may be: Stripe's default, five minutes.
const Tolerance = 300 * time.Second

// Event types the webhook applies; any other is answered 200 and ignored.
const (
	EventCheckoutCompleted = "checkout.session.completed"
	// A delayed payment (a bank debit) that completed the session unpaid
	// has succeeded or failed.
	EventCheckoutAsyncSucceeded = "checkout.session.async_payment_succeeded"
	EventCheckoutAsyncFailed    = "checkout.session.async_payment_failed"
	EventInvoicePaid            = "invoice.paid"
	EventInvoiceFailed          = "invoice.payment_failed"
	EventSubscriptionUpdated    = "customer.subscription.updated"
	EventSubscriptionDeleted    = "customer.subscription.deleted"
	EventChargeRefunded         = "charge.refunded"
	EventDisputeCreated         = "charge.dispute.created"
)

// Webhook verifies Stripe-Signature headers and decodes Stripe events into
// billing events.
type Webhook struct {
	secret string
}

var _ billing.WebhookVerifier = (*Webhook)(nil)

// NewWebhook returns a verifier for the endpoint's signing secret.
func NewWebhook(secret string) *Webhook { return &Webhook{secret: secret} }

// VerifyEvent checks the signature of payload (the raw request body) within
// Tolerance and that the event has the API version of stripe-go, then
// decodes it. Every failure wraps billing.ErrInvalidSignature.
func (w *Webhook) VerifyEvent(payload []byte, signature string) (billing.Event, error) {
	if w.secret == "" {
		return billing.Event{}, fmt.Errorf("%w: no webhook secret configured", billing.ErrInvalidSignature)
	}
	ev, err := webhook.ConstructEventWithOptions(payload, signature, w.secret, webhook.ConstructEventOptions{Tolerance: Tolerance})
	if err != nil {
		return billing.Event{}, fmt.Errorf("%w: %v", billing.ErrInvalidSignature, err)
	}
	out, err := Decode(ev)
	if err != nil {
		return billing.Event{}, fmt.Errorf("%w: %v", billing.ErrInvalidSignature, err)
	}
	return out, nil
}

// Decode turns a Stripe event into a billing event. An event of a type that
// Paymeter does not apply decodes with a nil Change.
func Decode(ev stripe.Event) (billing.Event, error) {
	out := billing.Event{ID: ev.ID, Type: string(ev.Type), Created: unix(ev.Created)}
	if out.ID == "" {
		return out, fmt.Errorf("event without id")
	}
	if ev.Data == nil {
		return out, fmt.Errorf("event %s without data", ev.ID)
	}
	raw := ev.Data.Raw
	switch out.Type {
	case EventCheckoutCompleted, EventCheckoutAsyncSucceeded, EventCheckoutAsyncFailed:
		var cs stripe.CheckoutSession
		if err := json.Unmarshal(raw, &cs); err != nil {
			return out, fmt.Errorf("decode %s: %w", out.Type, err)
		}
		out.CustomerID, out.UID = customerID(cs.Customer), cs.Metadata[MetaUID]
		if out.UID == "" {
			out.UID = cs.ClientReferenceID
		}
		ch := billing.CheckoutCompleted{SessionID: cs.ID, Plan: cs.Metadata[MetaPlan], Created: out.Created,
			Paid: cs.PaymentStatus == stripe.CheckoutSessionPaymentStatusPaid || cs.PaymentStatus == stripe.CheckoutSessionPaymentStatusNoPaymentRequired}
		switch cs.Mode {
		case stripe.CheckoutSessionModeSubscription:
			ch.Kind = billing.PriceMonthly
			if cs.Subscription != nil {
				ch.SubscriptionID = cs.Subscription.ID
			}
		case stripe.CheckoutSessionModePayment:
			ch.Kind = billing.PriceInstant
			if cs.PaymentIntent != nil {
				ch.Payment = cs.PaymentIntent.ID
			}
		default:
			return out, nil
		}
		switch out.Type {
		case EventCheckoutAsyncSucceeded:
			ch.Paid = true
		case EventCheckoutAsyncFailed:
			out.Change = billing.CheckoutPaymentFailed{SessionID: cs.ID, Kind: ch.Kind, Plan: ch.Plan, Created: out.Created}
			return out, nil
		}
		out.Change = ch
	case EventInvoicePaid, EventInvoiceFailed:
		var inv stripe.Invoice
		if err := json.Unmarshal(raw, &inv); err != nil {
			return out, fmt.Errorf("decode %s: %w", out.Type, err)
		}
		out.CustomerID = customerID(inv.Customer)
		if inv.SubscriptionDetails != nil {
			out.UID = inv.SubscriptionDetails.Metadata[MetaUID]
		}
		if inv.Subscription == nil || inv.Subscription.ID == "" {
			return out, nil // not a subscription invoice: nothing to grant
		}
		plan, period := invoicePlan(&inv)
		if out.Type == EventInvoiceFailed {
			out.Change = billing.InvoiceFailed{InvoiceID: inv.ID, SubscriptionID: inv.Subscription.ID, Plan: plan,
				PeriodEnd: unix(period.End), Created: out.Created}
			return out, nil
		}
		paid := billing.InvoicePaid{InvoiceID: inv.ID, SubscriptionID: inv.Subscription.ID, Plan: plan,
			PeriodStart: unix(period.Start), PeriodEnd: unix(period.End), Amount: inv.AmountPaid, Created: out.Created}
		if inv.PaymentIntent != nil {
			paid.Payment = inv.PaymentIntent.ID
		}
		out.Change = paid
	case EventSubscriptionUpdated, EventSubscriptionDeleted:
		var sub stripe.Subscription
		if err := json.Unmarshal(raw, &sub); err != nil {
			return out, fmt.Errorf("decode %s: %w", out.Type, err)
		}
		out.CustomerID, out.UID = customerID(sub.Customer), sub.Metadata[MetaUID]
		ch := billing.SubscriptionChanged{SubscriptionID: sub.ID, Status: string(sub.Status),
			CurrentPeriodEnd: unix(sub.CurrentPeriodEnd), CancelAtPeriodEnd: sub.CancelAtPeriodEnd, Created: out.Created}
		if sub.Items != nil {
			for _, it := range sub.Items.Data {
				if it == nil {
					continue
				}
				if p := planOf(it.Price); p != "" {
					ch.Plan = p
				}
			}
		}
		if out.Type == EventSubscriptionDeleted {
			ch.Status = billing.StatusCanceled
		}
		out.Change = ch
	case EventChargeRefunded:
		var c stripe.Charge
		if err := json.Unmarshal(raw, &c); err != nil {
			return out, fmt.Errorf("decode %s: %w", out.Type, err)
		}
		out.CustomerID, out.UID = customerID(c.Customer), c.Metadata[MetaUID]
		out.Change = billing.PaymentReversed{ChargeID: c.ID, Payment: paymentOf(&c), Charged: c.Amount,
			Refunded: c.AmountRefunded, Created: out.Created}
	case EventDisputeCreated:
		var d stripe.Dispute
		if err := json.Unmarshal(raw, &d); err != nil {
			return out, fmt.Errorf("decode %s: %w", out.Type, err)
		}
		// A dispute names its charge but neither the customer nor the
		// amount charged: the webhook reads the charge (Payments.Charge).
		r := billing.PaymentReversed{Disputed: d.Amount, Created: out.Created}
		if d.Charge != nil {
			r.ChargeID = d.Charge.ID
		}
		if d.PaymentIntent != nil {
			r.Payment = d.PaymentIntent.ID
		}
		out.Change = r
	}
	return out, nil
}

// invoicePlan finds the plan and service period an invoice bills: that of
// its last line with a positive amount and a plan's price (a plan change
// invoice also holds a negative line for the unused time of the old plan).
func invoicePlan(inv *stripe.Invoice) (string, stripe.Period) {
	var plan string
	var period stripe.Period
	if inv.Lines == nil {
		return plan, period
	}
	for _, l := range inv.Lines.Data {
		if l == nil {
			continue
		}
		p := planOf(l.Price)
		if p == "" || (l.Amount < 0 && plan != "") {
			continue
		}
		plan = p
		if l.Period != nil {
			period = *l.Period
		}
	}
	return plan, period
}

// planOf names the plan of a price: its "plan" metadata, set by the sync,
// or else its lookup key "<Plan>_<kind>_price".
func planOf(p *stripe.Price) string {
	if p == nil {
		return ""
	}
	if n := p.Metadata[MetaPlan]; n != "" {
		return n
	}
	for _, kind := range []string{billing.PriceMonthly, billing.PriceInstant} {
		if n, ok := strings.CutSuffix(p.LookupKey, "_"+kind+"_price"); ok {
			return n
		}
	}
	return ""
}

func customerID(c *stripe.Customer) string {
	if c == nil {
		return ""
	}
	return c.ID
}

func unix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}
