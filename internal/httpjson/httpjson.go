// Package httpjson is where every HTTP handler of Paymeter (the functions,
// the task handlers, the dev server and the Stripe stand-in) reads and
// answers: JSON bodies, the contract's error body {"error": {"code": "...",
// "message": "..."}} with the one table from billing error codes to
// statuses, the bearer header and the strict JSON decoder.
package httpjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/paymeter/paymeter/billing"
)

// ErrorBody is the contract's error shape.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Write answers status with v as JSON. It is never cached unless the
// handler set its own Cache-Control first (GET /api/plans is public).
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// statusOf maps each billing error code to its HTTP status; a code not
// listed is internal.
var statusOf = map[string]int{
	billing.CodeBadRequest:          http.StatusBadRequest,
	billing.CodeInvalidPlan:         http.StatusBadRequest,
	billing.CodeInvalidSignature:    http.StatusBadRequest,
	billing.CodeUnauthenticated:     http.StatusUnauthorized,
	billing.CodeInvalidAPIKey:       http.StatusUnauthorized,
	billing.CodeInsufficientCredits: http.StatusPaymentRequired,
	billing.CodeNotFound:            http.StatusNotFound,
	billing.CodeMethodNotAllowed:    http.StatusMethodNotAllowed,
	billing.CodeConflict:            http.StatusConflict,
	billing.CodeAlreadySubscribed:   http.StatusConflict,
	billing.CodeTooManyKeys:         http.StatusConflict,
	billing.CodeRouteNotAllowed:     http.StatusForbidden,
	billing.CodeRateLimited:         http.StatusTooManyRequests,
	billing.CodeKeyLimitReached:     http.StatusPaymentRequired,
	billing.CodeTooLarge:            http.StatusRequestEntityTooLarge,
	billing.CodeUnavailable:         http.StatusServiceUnavailable,
	billing.CodeInternal:            http.StatusInternalServerError,
	billing.CodeIdempotencyConflict: http.StatusConflict,
	billing.CodeReservationExpired:  http.StatusConflict,
	billing.CodeUpstreamError:       http.StatusBadGateway,
	billing.CodeUpstreamTimeout:     http.StatusGatewayTimeout,
}

// Fail answers err in the contract's error shape, with the status its
// billing code maps to. A 5xx is logged in full to log (when not nil); an
// internal error, one that carries no billing code, is answered with a
// generic message, never its text.
func Fail(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := billing.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		code, status = billing.CodeInternal, http.StatusInternalServerError
	}
	message := billing.ErrorMessage(err)
	if status >= 500 {
		if log != nil {
			log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		if code == billing.CodeInternal {
			message = "internal error"
		}
	}
	var limited *billing.RateLimitedError
	if errors.As(err, &limited) {
		w.Header().Set("Retry-After", strconv.FormatInt(limited.RetryAfterSeconds(), 10))
	}
	var body ErrorBody
	body.Error.Code, body.Error.Message = code, message
	Write(w, status, body)
}

// Bearer returns the token of an "Authorization: Bearer <token>" header,
// the scheme in any case; false when there is none.
func Bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	return token, ok && strings.EqualFold(scheme, "Bearer") && token != ""
}

// ReadBody reads the request body (capped by the caller with
// http.MaxBytesReader), refusing an oversized or non-UTF-8 one. Its errors
// are *billing.Error, safe to answer with Fail.
func ReadBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, billing.Errorf(billing.CodeTooLarge, "the request body is over %d bytes", tooBig.Limit)
	}
	if err != nil {
		return nil, billing.Errorf(billing.CodeBadRequest, "the request body could not be read")
	}
	if !utf8.Valid(b) {
		return nil, billing.Errorf(billing.CodeBadRequest, "the request body is not UTF-8")
	}
	return b, nil
}

// Decode reads one JSON object from the request body into v: UTF-8, no
// unknown fields, nothing after the object. Its errors are *billing.Error,
// safe to answer with Fail.
func Decode(r *http.Request, v any) error {
	b, err := ReadBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return billing.Errorf(billing.CodeBadRequest, "send a JSON object")
	}
	return DecodeBytes(b, v, true)
}

// DecodeBytes decodes one JSON value of b into v; strict refuses unknown
// fields. Its errors say what is wrong without echoing the body.
func DecodeBytes(b []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return billing.Errorf(billing.CodeBadRequest, "malformed JSON: %s", jsonProblem(err))
	}
	if dec.More() {
		return billing.Errorf(billing.CodeBadRequest, "malformed JSON: data after the object")
	}
	return nil
}

// jsonProblem says what is wrong with a body without echoing the body.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s", typ.Field, typ.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "unexpected end of input"
	default:
		return "not a JSON object of the expected shape"
	}
}
