// Package payments is Paymeter's Stripe adapter, on stripe-go v76 (API
// 2023-10-16): customers, Checkout Sessions, cancellation, the customer
// portal, webhook verification and decoding into billing events, and the
// sync of the plans catalog to Stripe products and prices.
package payments

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/paymeter/paymeter/billing"
)

// Metadata keys set on Stripe objects.
const (
	MetaUID  = "uid"
	MetaPlan = "plan"
	MetaKind = "kind"
)

// Config is what the adapter needs.
type Config struct {
	SecretKey string
	// PublicURL is the site origin: Checkout returns the browser to
	// PublicURL+"/checkout/success" or "/checkout/cancel", the portal to
	// PublicURL+"/".
	PublicURL string
	// BackendURL replaces Stripe's API origin (stripe-mock in tests).
	BackendURL string
	HTTPClient *http.Client
}

// Stripe implements billing.Payments on the Stripe API. It is safe for
// concurrent use.
type Stripe struct {
	sc                              *client.API
	successURL, cancelURL, portalTo string
}

var _ billing.Payments = (*Stripe)(nil)

// New returns the adapter. It makes no request.
func New(cfg Config) *Stripe {
	bc := &stripe.BackendConfig{
		HTTPClient:        cfg.HTTPClient,
		MaxNetworkRetries: stripe.Int64(2),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelError},
	}
	if bc.HTTPClient == nil {
		bc.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.BackendURL != "" {
		bc.URL = stripe.String(strings.TrimRight(cfg.BackendURL, "/"))
	}
	b := stripe.GetBackendWithConfig(stripe.APIBackend, bc)
	base := strings.TrimRight(cfg.PublicURL, "/")
	return &Stripe{
		sc:         client.New(cfg.SecretKey, &stripe.Backends{API: b, Connect: b, Uploads: b}),
		successURL: base + "/checkout/success",
		cancelURL:  base + "/checkout/cancel",
		portalTo:   base + "/",
	}
}

// EnsureCustomer creates the Stripe customer of uid. The idempotency key is
// derived from uid, so a retry within Stripe's 24 hours returns the same
// customer; the caller stores the id on the account.
func (s *Stripe) EnsureCustomer(ctx context.Context, uid, email string) (string, error) {
	p := &stripe.CustomerParams{Metadata: map[string]string{MetaUID: uid}}
	if email != "" {
		p.Email = stripe.String(email)
	}
	p.Context = ctx
	p.SetIdempotencyKey("paymeter-customer-" + uid)
	c, err := s.sc.Customers.New(p)
	if err != nil {
		return "", fmt.Errorf("create stripe customer for %s: %w", uid, err)
	}
	return c.ID, nil
}

// PriceID returns the id of the active price with the lookup key of plan and
// kind; ErrInvalidPlan if there is none.
func (s *Stripe) PriceID(ctx context.Context, plan, kind string) (string, error) {
	p := &stripe.PriceListParams{LookupKeys: []*string{stripe.String(billing.LookupKey(plan, kind))}, Active: stripe.Bool(true)}
	p.Context = ctx
	it := s.sc.Prices.List(p)
	for it.Next() {
		return it.Price().ID, nil
	}
	if err := it.Err(); err != nil {
		return "", fmt.Errorf("find price %s: %w", billing.LookupKey(plan, kind), err)
	}
	return "", fmt.Errorf("no active price %s (run the plan sync): %w", billing.LookupKey(plan, kind), billing.ErrInvalidPlan)
}

// CheckoutSession creates a Checkout Session: subscription mode for the
// monthly price, payment mode for the instant one. The idempotency key
// covers the account, price and minute, so a double click returns the same
// session. A subscription session then expires the customer's other open
// sessions, so that at most one of them can be paid and start a
// subscription (see ExpireOtherSessions).
func (s *Stripe) CheckoutSession(ctx context.Context, req billing.CheckoutRequest) (billing.Checkout, error) {
	price, err := s.PriceID(ctx, req.Plan, req.Kind)
	if err != nil {
		return billing.Checkout{}, err
	}
	meta := map[string]string{MetaUID: req.UID, MetaPlan: req.Plan, MetaKind: req.Kind}
	p := &stripe.CheckoutSessionParams{
		Customer:          stripe.String(req.CustomerID),
		ClientReferenceID: stripe.String(req.UID),
		LineItems:         []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(price), Quantity: stripe.Int64(1)}},
		SuccessURL:        stripe.String(s.successURL),
		CancelURL:         stripe.String(s.cancelURL),
		Metadata:          meta,
	}
	if req.Kind == billing.PriceMonthly {
		p.Mode = stripe.String(string(stripe.CheckoutSessionModeSubscription))
		p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{Metadata: meta}
	} else {
		p.Mode = stripe.String(string(stripe.CheckoutSessionModePayment))
		p.PaymentIntentData = &stripe.CheckoutSessionPaymentIntentDataParams{Metadata: meta}
	}
	p.Context = ctx
	p.SetIdempotencyKey(fmt.Sprintf("paymeter-checkout-%s-%s-%d", req.UID, price, time.Now().Unix()/60))
	cs, err := s.sc.CheckoutSessions.New(p)
	if err != nil {
		return billing.Checkout{}, fmt.Errorf("create checkout session for %s: %w", req.UID, err)
	}
	if req.Kind == billing.PriceMonthly {
		if _, err := s.ExpireOtherSessions(ctx, req.CustomerID, cs.ID); err != nil {
			return billing.Checkout{}, err
		}
	}
	return billing.Checkout{SessionID: cs.ID, URL: cs.URL}, nil
}

// ExpireOtherSessions expires every open Checkout Session of the customer
// but keep, and returns their ids. Expiring after the new session is
// created means that of two sessions opened at the same moment neither
// survives unseen: each expires the other, and the customer opens one
// again. A session that stopped being open meanwhile (paid, or expired by
// another call) is skipped: Stripe answers 400 for it.
func (s *Stripe) ExpireOtherSessions(ctx context.Context, customerID, keep string) ([]string, error) {
	lp := &stripe.CheckoutSessionListParams{Customer: stripe.String(customerID),
		Status: stripe.String(string(stripe.CheckoutSessionStatusOpen))}
	lp.Context = ctx
	var open []string
	it := s.sc.CheckoutSessions.List(lp)
	for it.Next() {
		if cs := it.CheckoutSession(); cs.ID != keep && cs.Status == stripe.CheckoutSessionStatusOpen {
			open = append(open, cs.ID)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list open checkout sessions of %s: %w", customerID, err)
	}
	var expired []string
	for _, id := range open {
		p := &stripe.CheckoutSessionExpireParams{}
		p.Context = ctx
		_, err := s.sc.CheckoutSessions.Expire(id, p)
		var se *stripe.Error
		switch {
		case err == nil:
			expired = append(expired, id)
		case isMissing(err), errors.As(err, &se) && se.HTTPStatusCode == http.StatusBadRequest:
			// no longer open
		default:
			return expired, fmt.Errorf("expire checkout session %s: %w", id, err)
		}
	}
	return expired, nil
}

// CancelSubscriptions cancels at once every subscription of the customer
// that has not ended.
func (s *Stripe) CancelSubscriptions(ctx context.Context, customerID string) ([]string, error) {
	lp := &stripe.SubscriptionListParams{Customer: stripe.String(customerID)}
	lp.Context = ctx
	var ids []string
	it := s.sc.Subscriptions.List(lp)
	for it.Next() {
		sub := it.Subscription()
		if sub.Status == stripe.SubscriptionStatusCanceled || sub.Status == stripe.SubscriptionStatusIncompleteExpired {
			continue
		}
		cp := &stripe.SubscriptionCancelParams{}
		cp.Context = ctx
		cp.SetIdempotencyKey("paymeter-cancel-" + sub.ID)
		if _, err := s.sc.Subscriptions.Cancel(sub.ID, cp); err != nil && !isMissing(err) {
			return ids, fmt.Errorf("cancel subscription %s: %w", sub.ID, err)
		}
		ids = append(ids, sub.ID)
	}
	if err := it.Err(); err != nil {
		return ids, fmt.Errorf("list subscriptions of %s: %w", customerID, err)
	}
	return ids, nil
}

// PortalSession creates a customer portal session returning to the site.
func (s *Stripe) PortalSession(ctx context.Context, customerID string) (string, error) {
	p := &stripe.BillingPortalSessionParams{Customer: stripe.String(customerID), ReturnURL: stripe.String(s.portalTo)}
	p.Context = ctx
	ps, err := s.sc.BillingPortalSessions.New(p)
	if err != nil {
		return "", fmt.Errorf("create portal session for %s: %w", customerID, err)
	}
	return ps.URL, nil
}

// Charge reads a charge; billing.ErrNotFound if Stripe has none by that id.
func (s *Stripe) Charge(ctx context.Context, id string) (billing.Charge, error) {
	p := &stripe.ChargeParams{}
	p.Context = ctx
	ch, err := s.sc.Charges.Get(id, p)
	if isMissing(err) {
		return billing.Charge{}, fmt.Errorf("charge %s: %w", id, billing.ErrNotFound)
	}
	if err != nil {
		return billing.Charge{}, fmt.Errorf("get charge %s: %w", id, err)
	}
	return chargeOf(ch), nil
}

func chargeOf(ch *stripe.Charge) billing.Charge {
	c := billing.Charge{ID: ch.ID, Amount: ch.Amount, Refunded: ch.AmountRefunded, Payment: paymentOf(ch)}
	if ch.Customer != nil {
		c.CustomerID = ch.Customer.ID
	}
	return c
}

// paymentOf is what a grant paid by the charge names: its payment intent,
// or failing that its invoice.
func paymentOf(ch *stripe.Charge) string {
	switch {
	case ch.PaymentIntent != nil && ch.PaymentIntent.ID != "":
		return ch.PaymentIntent.ID
	case ch.Invoice != nil:
		return ch.Invoice.ID
	}
	return ""
}

func isMissing(err error) bool {
	var se *stripe.Error
	return errors.As(err, &se) && (se.Code == stripe.ErrorCodeResourceMissing || se.HTTPStatusCode == http.StatusNotFound)
}
