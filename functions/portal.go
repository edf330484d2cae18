package functions

import (
	"net/http"

	"github.com/paymeter/paymeter/billing"
)

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
