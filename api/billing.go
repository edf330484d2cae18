package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/paymeter/paymeter/billing"
)

// billingFunctions returns the Checkout, Cancel, Portal and Webhook entry
// points.
func (s *Server) billingFunctions() []Function {
	return []Function{
		{Name: "Checkout", Paths: []string{"/api/checkout"}, Handler: s.wrap(only(http.MethodPost, s.signedIn(s.checkout)))},
		{Name: "Cancel", Paths: []string{"/api/cancel"}, Handler: s.wrap(only(http.MethodPost, s.signedIn(s.cancel)))},
		{Name: "Portal", Paths: []string{"/api/portal"}, Handler: s.wrap(only(http.MethodPost, s.signedIn(s.portal)))},
		{Name: "Webhook", Paths: []string{"/api/stripe/webhook"}, Handler: s.wrapLimit(only(http.MethodPost, s.webhook), max(s.Config.MaxBodyBytes, webhookBodyBytes))},
	}
}

var errPlanChange = &billing.Error{Code: billing.CodeAlreadySubscribed,
	Message: "you already subscribe to a plan: change plans in the billing portal"}

// checkout serves POST /api/checkout {"plan","subscribe"}: a Checkout
// Session for a paid plan, monthly or once.
func (s *Server) checkout(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	var in struct {
		Plan      string `json:"plan"`
		Subscribe bool   `json:"subscribe"`
	}
	if err := decode(r, &in, false); err != nil {
		s.WriteError(w, r, err)
		return
	}
	plan, err := s.Catalog.PaidPlan(in.Plan)
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	kind := billing.PriceInstant
	if in.Subscribe {
		kind = billing.PriceMonthly
	}
	if _, ok := plan.Price(kind); !ok {
		s.WriteError(w, r, billing.ErrInvalidPlan)
		return
	}
	if in.Subscribe && a.Subscription.Active() {
		// One subscription per account: a second would bill twice. Plan
		// changes go through the portal, which changes the subscription
		// in place (and so never cancels the one that just renewed).
		if a.Subscription.Plan == plan.Name {
			s.WriteError(w, r, billing.ErrAlreadySubscribed)
		} else {
			s.WriteError(w, r, errPlanChange)
		}
		return
	}
	customer, err := s.customerOf(r.Context(), a, identityOf(r))
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	co, err := s.Payments.CheckoutSession(r.Context(), billing.CheckoutRequest{UID: a.UID, CustomerID: customer, Plan: plan.Name, Kind: kind})
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	s.Log.InfoContext(r.Context(), "checkout started", "uid", a.UID, "plan", plan.Name, "kind", kind, "session", co.SessionID)
	writeJSON(w, http.StatusOK, co)
}

// cancel serves POST /api/cancel: every subscription cancelled with the
// provider, the account back on Free, and the Free chain scheduled. It
// grants nothing, however often it is called.
func (s *Server) cancel(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	ctx := r.Context()
	if a.CustomerID != "" {
		ids, err := s.Payments.CancelSubscriptions(ctx, a.CustomerID)
		if err != nil {
			s.WriteError(w, r, err)
			return
		}
		if len(ids) > 0 {
			s.Log.InfoContext(ctx, "subscriptions cancelled", "uid", a.UID, "subscriptions", ids)
		}
	}
	now := s.Clock.Now()
	a, err := s.Accounts.UpdateAccount(ctx, a.UID, func(a *billing.Account) error {
		a.CancelSubscription(now)
		return nil
	})
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	if err := s.scheduleFree(ctx, a); err != nil {
		s.WriteError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": toUserJSON(a, now)})
}

// portal serves POST /api/portal: the URL of the customer portal.
func (s *Server) portal(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	customer, err := s.customerOf(r.Context(), a, identityOf(r))
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	url, err := s.Payments.PortalSession(r.Context(), customer)
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"url": url})
}

// customerOf returns the payment customer of a, creating it and storing it
// on the account the first time, with the email of the caller's token only
// if the token says it is verified (the provider mails receipts to it).
// Concurrent first calls get one customer: the provider call is idempotent
// per account, and the first id stored wins.
func (s *Server) customerOf(ctx context.Context, a *billing.Account, caller billing.Identity) (string, error) {
	if a.CustomerID != "" {
		return a.CustomerID, nil
	}
	email := ""
	if caller.EmailVerified {
		email = caller.Email
	}
	id, err := s.Payments.EnsureCustomer(ctx, a.UID, email)
	if err != nil {
		return "", err
	}
	a, err = s.Accounts.UpdateAccount(ctx, a.UID, func(a *billing.Account) error {
		if a.CustomerID == "" {
			a.CustomerID = id
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return a.CustomerID, nil
}

// scheduleFree schedules the next Free grant of a Free account. Scheduling
// the same period twice makes one task, so calling it again is harmless.
func (s *Server) scheduleFree(ctx context.Context, a *billing.Account) error {
	t, ok := a.NextGrant()
	if !ok {
		return nil
	}
	if err := s.Scheduler.ScheduleGrant(ctx, t); err != nil {
		return fmt.Errorf("schedule Free grant %s/%d: %w: %w", t.UID, t.Period, errUnavailable, err)
	}
	return nil
}

var errUnavailable = &billing.Error{Code: billing.CodeUnavailable, Message: "try again shortly"}

// webhook serves POST /api/stripe/webhook. The raw body is verified against
// the Stripe-Signature header (400 invalid_signature, writing nothing,
// otherwise); an event of a type Paymeter applies runs on its account in
// one transaction that records the event id, so a redelivery is a no-op
// (200). A failure that a retry may cure answers 5xx so that Stripe
// retries; an event no account or plan of ours matches answers 200 and is
// logged, since retrying cannot help.
func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	ev, err := s.Webhooks.VerifyEvent(body, r.Header.Get("Stripe-Signature"))
	if err != nil {
		s.Log.WarnContext(r.Context(), "webhook refused", "err", err)
		s.WriteError(w, r, billing.ErrInvalidSignature)
		return
	}
	ctx := r.Context()
	log := s.Log.With("event", ev.ID, "type", ev.Type)
	if ev.Change == nil {
		log.DebugContext(ctx, "webhook event ignored")
		writeJSON(w, http.StatusOK, map[string]any{"received": true, "applied": false})
		return
	}
	uid, err := s.eventAccount(ctx, &ev)
	if errors.Is(err, billing.ErrNotFound) {
		log.WarnContext(ctx, "webhook event for no account of ours", "customer", ev.CustomerID, "uid", ev.UID)
		writeJSON(w, http.StatusOK, map[string]any{"received": true, "applied": false})
		return
	}
	if err != nil {
		s.WriteError(w, r, fmt.Errorf("webhook %s: %w: %w", ev.ID, errUnavailable, err))
		return
	}
	now := s.Clock.Now()
	var after *billing.Account
	applied, err := s.Events.ApplyEvent(ctx, ev.ID, uid, func(a *billing.Account) error {
		after = a
		return a.Apply(ev, s.Catalog, now)
	})
	switch {
	case errors.Is(err, billing.ErrInvalidPlan), errors.Is(err, billing.ErrNotFound):
		log.WarnContext(ctx, "webhook event not applicable", "uid", uid, "err", err)
		writeJSON(w, http.StatusOK, map[string]any{"received": true, "applied": false})
		return
	case err != nil:
		s.WriteError(w, r, err)
		return
	}
	if movesPlan(ev.Change) {
		if !applied {
			// Applied before: still make sure the Free chain is scheduled,
			// in case the delivery that applied it failed just after.
			if after, err = s.Accounts.Account(ctx, uid); err != nil {
				s.WriteError(w, r, err)
				return
			}
		}
		if err := s.scheduleFree(ctx, after); err != nil {
			s.WriteError(w, r, err)
			return
		}
	}
	log.InfoContext(ctx, "webhook event", "uid", uid, "applied", applied)
	writeJSON(w, http.StatusOK, map[string]any{"received": true, "applied": applied})
}

// eventAccount finds the account an event is about: by its customer, else
// by the uid in its metadata. A dispute names only its charge, which is
// read from the provider for the customer, payment and amount charged.
func (s *Server) eventAccount(ctx context.Context, ev *billing.Event) (string, error) {
	if rv, ok := ev.Change.(billing.PaymentReversed); ok && rv.ChargeID != "" && (rv.Charged == 0 || ev.CustomerID == "") {
		ch, err := s.Payments.Charge(ctx, rv.ChargeID)
		if err != nil {
			return "", err
		}
		rv.Charged = ch.Amount
		if rv.Payment == "" {
			rv.Payment = ch.Payment
		}
		ev.Change = rv
		ev.CustomerID = ch.CustomerID
	}
	if ev.CustomerID != "" {
		a, err := s.Events.AccountByCustomer(ctx, ev.CustomerID)
		if err == nil {
			return a.UID, nil
		}
		if !errors.Is(err, billing.ErrNotFound) {
			return "", err
		}
	}
	if ev.UID != "" {
		return ev.UID, nil
	}
	return "", billing.ErrNotFound
}

// movesPlan reports whether a change can move the account between Free and
// a paid plan, after which the Free chain may need scheduling.
func movesPlan(ch any) bool {
	switch c := ch.(type) {
	case billing.SubscriptionChanged, billing.InvoicePaid, billing.InvoiceFailed:
		return true
	case billing.CheckoutCompleted:
		return c.Kind == billing.PriceMonthly
	}
	return false
}
