// Package paymeterclient is a small Go client of Paymeter's operator API
// (docs/api.md, "Operator API") for the operator's own backends: verify a
// consumer's API key and spend credits, or hold credits for work whose cost
// is known only after it ran and settle them.
//
// Every call is retried on network errors, 429, 502, 503 and 504, with
// backoff, and carries an Idempotency-Key (one per logical call, the same on
// each retry), so that a retry never spends twice. Settle and release are
// idempotent by themselves.
//
// VerifySignature and ReadEvent (webhook.go) check the signed events
// Paymeter posts to the operator's OPERATOR_WEBHOOK_URL.
package paymeterclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Client calls one Paymeter deployment with the operator secret.
type Client struct {
	BaseURL string       // the site origin, e.g. https://paymeter.example.com
	Secret  string       // PAYMETER_OPERATOR_SECRET
	HTTP    *http.Client // default: a client with a 30s timeout
	// Retries is how many times a failed call is retried (default 3);
	// Backoff the first wait, doubled each time (default 200ms).
	Retries int
	Backoff time.Duration
}

// New returns a client of the deployment at baseURL.
func New(baseURL, secret string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Secret: secret}
}

// Error is an answer in the contract's error shape.
type Error struct {
	Status  int
	Code    string // e.g. insufficient_credits, invalid_api_key
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("paymeter: %d %s: %s", e.Status, e.Code, e.Message)
}

// Code returns the error code of err, "" if it is not an *Error.
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// Verification is what POST /api/verify answers.
type Verification struct {
	Allowed bool   `json:"allowed"`
	Account string `json:"account"`
	KeyID   string `json:"keyId"`
	Cost    int64  `json:"cost"`
	Credits int64  `json:"credits"` // left after the debit
}

// Verify debits cost credits (0: the route's cost) from the account of the
// consumer's API key, for route (optional, counted in its usage). Errors are
// *Error: invalid_api_key, insufficient_credits, ...
func (c *Client) Verify(ctx context.Context, apiKey string, cost int64, route string) (Verification, error) {
	in := map[string]any{"key": apiKey}
	if cost > 0 {
		in["cost"] = cost
	}
	if route != "" {
		in["route"] = route
	}
	var out Verification
	return out, c.do(ctx, http.MethodPost, "/api/verify", in, newKey(), &out)
}

// Reservation is credits held by POST /api/reservations.
type Reservation struct {
	ID        string    `json:"id"`
	Account   string    `json:"account"`
	Credits   int64     `json:"credits"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Settlement is what settling or releasing a reservation answers.
type Settlement struct {
	Charged  int64 `json:"charged"`
	Released int64 `json:"released"`
	Credits  int64 `json:"credits"` // the balance after
}

// Reserve holds credits of the key's account for ttl (0: 5 minutes).
func (c *Client) Reserve(ctx context.Context, apiKey string, credits int64, ttl time.Duration) (Reservation, error) {
	in := map[string]any{"key": apiKey, "credits": credits}
	if ttl > 0 {
		in["ttlSeconds"] = int64(ttl / time.Second)
	}
	var out Reservation
	return out, c.do(ctx, http.MethodPost, "/api/reservations", in, newKey(), &out)
}

// Settle charges credits of reservation id (0 to the held amount) and
// releases the rest; reservation_expired once it has expired.
func (c *Client) Settle(ctx context.Context, id string, credits int64) (Settlement, error) {
	var out Settlement
	return out, c.do(ctx, http.MethodPost, "/api/reservations/"+id+"/settle", map[string]int64{"credits": credits}, "", &out)
}

// Release gives every credit of reservation id back.
func (c *Client) Release(ctx context.Context, id string) (Settlement, error) {
	var out Settlement
	return out, c.do(ctx, http.MethodDelete, "/api/reservations/"+id, nil, "", &out)
}

func (c *Client) do(ctx context.Context, method, path string, in any, idem string, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	httpc := c.HTTP
	if httpc == nil {
		httpc = &http.Client{Timeout: 30 * time.Second}
	}
	retries, wait := c.Retries, c.Backoff
	if retries <= 0 {
		retries = 3
	}
	if wait <= 0 {
		wait = 200 * time.Millisecond
	}
	var last error
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.Secret)
		req.Header.Set("Content-Type", "application/json")
		if idem != "" {
			req.Header.Set("Idempotency-Key", idem)
		}
		res, err := httpc.Do(req)
		retry := err != nil
		if err == nil {
			last = decode(res, out)
			retry = res.StatusCode == 429 || res.StatusCode == 502 || res.StatusCode == 503 || res.StatusCode == 504
			if !retry {
				return last
			}
			if s, perr := strconv.Atoi(res.Header.Get("Retry-After")); perr == nil && s > 0 {
				wait = max(wait, time.Duration(s)*time.Second)
			}
		} else {
			last = err
		}
		if attempt >= retries || ctx.Err() != nil {
			return last
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func decode(res *http.Response, out any) error {
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	if res.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return &Error{Status: res.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	return json.Unmarshal(b, out)
}

// newKey is a random Idempotency-Key for one logical call.
func newKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "pmc_" + hex.EncodeToString(b)
}
