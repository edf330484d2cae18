package functions

import (
	"net/http"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
)

// Fail answers err in the contract's error shape (httpjson.Fail: one table
// from billing codes to statuses); an internal error is logged in full and
// answered with a generic message.
func (s *Server) Fail(w http.ResponseWriter, r *http.Request, err error) {
	httpjson.Fail(w, r, s.Log, err)
}

var errNoRoute = &billing.Error{Code: billing.CodeNotFound, Message: "no such route"}
