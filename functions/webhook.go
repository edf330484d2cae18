package functions

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
)

// webhookHandler is the Webhook entry point, whose bodies may be larger
// than the API's.
func (s *Server) webhookHandler() http.Handler {
	return s.wrapLimit(onlyMethod(http.MethodPost, s.webhook), max(s.Config.MaxBodyBytes, webhookBodyBytes))
}

// webhook serves POST /api/stripe/webhook. The raw body is verified against
// the Stripe-Signature header (400 invalid_signature, writing nothing,
// otherwise); an event of a type Paymeter applies runs on its account in
// one transaction that records the event id, so a redelivery is a no-op
// (200). A failure that a retry may cure answers 5xx so that Stripe
// retries; an event no account or plan of ours matches answers 200 and is
// logged, since retrying cannot help.
func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	body, err := httpjson.ReadBody(r)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	ev, err := s.Webhooks.VerifyEvent(body, r.Header.Get("Stripe-Signature"))
	if err != nil {
		s.Log.WarnContext(r.Context(), "webhook refused", "err", err)
		s.Fail(w, r, billing.ErrInvalidSignature)
		return
	}
	ctx := r.Context()
	log := s.Log.With("event", ev.ID, "type", ev.Type)
	if ev.Change == nil {
		log.DebugContext(ctx, "webhook event ignored")
		httpjson.Write(w, http.StatusOK, map[string]any{"received": true, "applied": false})
		return
	}
	uid, err := s.eventAccount(ctx, &ev)
	if errors.Is(err, billing.ErrNotFound) {
		log.WarnContext(ctx, "webhook event for no account of ours", "customer", ev.CustomerID, "uid", ev.UID)
		httpjson.Write(w, http.StatusOK, map[string]any{"received": true, "applied": false})
		return
	}
	if err != nil {
		s.Fail(w, r, fmt.Errorf("webhook %s: %w: %w", ev.ID, billing.ErrUnavailable, err))
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
		httpjson.Write(w, http.StatusOK, map[string]any{"received": true, "applied": false})
		return
	case err != nil:
		s.Fail(w, r, err)
		return
	}
	if movesPlan(ev.Change) {
		if !applied {
			// Applied before: still make sure the Free chain is scheduled,
			// in case the delivery that applied it failed just after.
			if after, err = s.Accounts.Account(ctx, uid); err != nil {
				s.Fail(w, r, err)
				return
			}
		}
		if err := s.scheduleFree(ctx, after); err != nil {
			s.Fail(w, r, err)
			return
		}
	}
	log.InfoContext(ctx, "webhook event", "uid", uid, "applied", applied)
	httpjson.Write(w, http.StatusOK, map[string]any{"received": true, "applied": applied})
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
