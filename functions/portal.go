package functions

import (
	"net/http"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
)

// portal serves POST /api/portal: the URL of the customer portal.
func (s *Server) portal(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	customer, err := s.customerOf(r.Context(), a, identityOf(r))
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	url, err := s.Payments.PortalSession(r.Context(), customer)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"url": url})
}
