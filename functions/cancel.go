package functions

import (
	"net/http"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
)

// cancel serves POST /api/cancel: every subscription cancelled with the
// provider, the account back on Free, and the Free chain scheduled. It
// grants nothing, however often it is called.
func (s *Server) cancel(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	ctx := r.Context()
	if a.CustomerID != "" {
		ids, err := s.Payments.CancelSubscriptions(ctx, a.CustomerID)
		if err != nil {
			s.Fail(w, r, err)
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
		s.Fail(w, r, err)
		return
	}
	if err := s.scheduleFree(ctx, a); err != nil {
		s.Fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"user": toUserJSON(a, now)})
}
