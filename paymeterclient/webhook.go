// Verifying the signed events Paymeter posts to OPERATOR_WEBHOOK_URL
// (notifications: credits.low, credits.exhausted, payment.failed,
// subscription.updated, credits.clawed_back). Standard library only.

package paymeterclient

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries an event's signature: "t=<unix seconds>,v1=<hex
// HMAC-SHA256 of "<t>.<body>" keyed with OPERATOR_WEBHOOK_SECRET>".
const SignatureHeader = "Paymeter-Signature"

// DefaultTolerance is how old a signature may be, against replays.
const DefaultTolerance = 5 * time.Minute

// Event types.
const (
	EventCreditsLow          = "credits.low"
	EventCreditsExhausted    = "credits.exhausted"
	EventPaymentFailed       = "payment.failed"
	EventSubscriptionUpdated = "subscription.updated"
	EventCreditsClawedBack   = "credits.clawed_back"
)

// Event is one webhook event. ID is the same on every retry of the same
// event: a receiver that stores the ids it handled handles each once.
type Event struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Created int64           `json:"created"`
	Data    json.RawMessage `json:"data"` // {"account": uid, ...}
}

// Errors of VerifySignature.
var (
	ErrNoSignature  = errors.New("paymeter webhook: no valid signature header")
	ErrBadSignature = errors.New("paymeter webhook: the signature does not match the body")
	ErrStale        = errors.New("paymeter webhook: the signature's timestamp is outside the tolerance")
)

// VerifySignature checks header, the Paymeter-Signature value, against body
// and secret at now: the HMAC must match and its timestamp be within
// tolerance of now (0: DefaultTolerance). It returns ErrNoSignature,
// ErrBadSignature or ErrStale.
func VerifySignature(body []byte, header, secret string, tolerance time.Duration, now time.Time) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 || secret == "" {
		return ErrNoSignature
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	want := mac.Sum(nil)
	match := false
	for _, s := range sigs {
		match = match || hmac.Equal(s, want)
	}
	if !match {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	return nil
}

// ParseEvent verifies body's signature (as VerifySignature, at the current
// time with DefaultTolerance) and decodes it.
func ParseEvent(body []byte, header, secret string) (Event, error) {
	if err := VerifySignature(body, header, secret, 0, time.Now()); err != nil {
		return Event{}, err
	}
	var e Event
	if err := json.Unmarshal(body, &e); err != nil {
		return Event{}, errors.New("paymeter webhook: malformed event")
	}
	return e, nil
}

// ReadEvent reads a webhook request's body (at most 64 KiB) and parses it
// with ParseEvent. Answer 400 on an error and 2xx once the event is handled:
// anything else makes Paymeter retry, for up to three days.
func ReadEvent(r *http.Request, secret string) (Event, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return Event{}, err
	}
	return ParseEvent(body, r.Header.Get(SignatureHeader), secret)
}
