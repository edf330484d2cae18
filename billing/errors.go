package billing

import (
	"errors"
	"fmt"
)

// Error codes. The HTTP layer maps each to a status in one table; the code is
// also the machine-readable "code" of the contract's error body.
const (
	CodeBadRequest          = "bad_request"
	CodeInvalidPlan         = "invalid_plan"
	CodeUnauthenticated     = "unauthenticated"
	CodeInvalidAPIKey       = "invalid_api_key"
	CodeInsufficientCredits = "insufficient_credits"
	CodeNotFound            = "not_found"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeConflict            = "conflict"
	CodeAlreadySubscribed   = "already_subscribed"
	CodeTooManyKeys         = "too_many_keys"
	CodeRouteNotAllowed     = "route_not_allowed"
	CodeRateLimited         = "rate_limited"
	CodeKeyLimitReached     = "key_limit_reached"
	CodeTooLarge            = "payload_too_large"
	CodeInvalidSignature    = "invalid_signature"
	CodeUnavailable         = "unavailable"
	CodeInternal            = "internal"
	// The metered API's own (docs/api.md, "The metered API" and "Operator API").
	CodeIdempotencyConflict = "idempotency_conflict"
	CodeUpstreamError       = "upstream_error"
	CodeUpstreamTimeout     = "upstream_timeout"
	CodeReservationExpired  = "reservation_expired"
)

// Error is a failure the client is told about: a code and a human message
// that is safe to show. Any other error is internal.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, CodeInternal
// for any other non-nil error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the safe message of the first *Error in err's chain,
// or a generic one for an internal error.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// Sentinel errors, compared with errors.Is.
var (
	ErrNotFound            = &Error{Code: CodeNotFound, Message: "not found"}
	ErrInsufficientCredits = &Error{Code: CodeInsufficientCredits, Message: "no credits left"}
	ErrInvalidAPIKey       = &Error{Code: CodeInvalidAPIKey, Message: "unknown or revoked API key"}
	ErrUnauthenticated     = &Error{Code: CodeUnauthenticated, Message: "sign in again: the ID token is missing, invalid or expired"}
	ErrTooManyKeys         = &Error{Code: CodeTooManyKeys, Message: fmt.Sprintf("an account can have at most %d API keys; revoke one first", MaxKeys)}
	ErrInvalidPlan         = &Error{Code: CodeInvalidPlan, Message: "choose a paid plan: Basic or Power"}
	ErrAlreadySubscribed   = &Error{Code: CodeAlreadySubscribed, Message: "you already subscribe to this plan"}
	ErrIdempotencyConflict = &Error{Code: CodeIdempotencyConflict, Message: "this Idempotency-Key was used for a different method or path"}
	ErrReservationExpired  = &Error{Code: CodeReservationExpired, Message: "the reservation expired: all its credits were released"}
	// ErrUnavailable answers a failure that passes: a retry soon succeeds.
	ErrUnavailable = &Error{Code: CodeUnavailable, Message: "try again shortly"}
)
