package functions

import (
	"context"
	"net/http"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
)

var errPlanChange = &billing.Error{Code: billing.CodeAlreadySubscribed,
	Message: "you already subscribe to a plan: change plans in the billing portal"}

// checkout serves POST /api/checkout {"plan","subscribe"}: a Checkout
// Session for a paid plan, monthly or once.
func (s *Server) checkout(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	var in struct {
		Plan      string `json:"plan"`
		Subscribe bool   `json:"subscribe"`
	}
	if err := httpjson.Decode(r, &in); err != nil {
		s.Fail(w, r, err)
		return
	}
	plan, err := s.Catalog.PaidPlan(in.Plan)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	kind := billing.PriceInstant
	if in.Subscribe {
		kind = billing.PriceMonthly
	}
	if _, ok := plan.Price(kind); !ok {
		s.Fail(w, r, billing.ErrInvalidPlan)
		return
	}
	if in.Subscribe && a.Subscription.Active() {
		// One subscription per account: a second would bill twice. Plan
		// changes go through the portal, which changes the subscription
		// in place (and so never cancels the one that just renewed).
		if a.Subscription.Plan == plan.Name {
			s.Fail(w, r, billing.ErrAlreadySubscribed)
		} else {
			s.Fail(w, r, errPlanChange)
		}
		return
	}
	customer, err := s.customerOf(r.Context(), a, identityOf(r))
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	co, err := s.Payments.CheckoutSession(r.Context(), billing.CheckoutRequest{UID: a.UID, CustomerID: customer, Plan: plan.Name, Kind: kind})
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	s.Log.InfoContext(r.Context(), "checkout started", "uid", a.UID, "plan", plan.Name, "kind", kind, "session", co.SessionID)
	httpjson.Write(w, http.StatusOK, co)
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
