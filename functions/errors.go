package functions

import (
	"net/http"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
)

// statusOf maps each billing error code to its HTTP status; a code not
// listed is internal.
var statusOf = map[string]int{
	billing.CodeBadRequest:          http.StatusBadRequest,
	billing.CodeInvalidPlan:         http.StatusBadRequest,
	billing.CodeInvalidSignature:    http.StatusBadRequest,
	billing.CodeUnauthenticated:     http.StatusUnauthorized,
	billing.CodeInvalidAPIKey:       http.StatusUnauthorized,
	billing.CodeInsufficientCredits: http.StatusPaymentRequired,
	billing.CodeForbidden:           http.StatusForbidden,
	billing.CodeNotFound:            http.StatusNotFound,
	billing.CodeMethodNotAllowed:    http.StatusMethodNotAllowed,
	billing.CodeConflict:            http.StatusConflict,
	billing.CodeAlreadySubscribed:   http.StatusConflict,
	billing.CodeTooManyKeys:         http.StatusConflict,
	billing.CodeTooLarge:            http.StatusRequestEntityTooLarge,
	billing.CodeUnavailable:         http.StatusServiceUnavailable,
	billing.CodeInternal:            http.StatusInternalServerError,
	billing.CodeIdempotencyConflict: http.StatusConflict,
	billing.CodeReservationExpired:  http.StatusConflict,
	billing.CodeUpstreamError:       http.StatusBadGateway,
	billing.CodeUpstreamTimeout:     http.StatusGatewayTimeout,
}

// WriteError answers with err in the contract's error shape. An internal
// error is logged in full and answered with a generic message.
func (s *Server) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	code := billing.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		code, status = billing.CodeInternal, http.StatusInternalServerError
	}
	message := billing.ErrorMessage(err)
	if status >= 500 {
		s.Log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		if code == billing.CodeInternal {
			message = "internal error"
		}
	}
	httpjson.Error(w, status, code, message)
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) { httpjson.Write(w, status, v) }

func writeJSON(w http.ResponseWriter, status int, v any) { httpjson.Write(w, status, v) }

var errNoRoute = &billing.Error{Code: billing.CodeNotFound, Message: "no such route"}
