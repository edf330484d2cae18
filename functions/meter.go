package functions

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
	"github.com/paymeter/paymeter/lease"
	"github.com/paymeter/paymeter/store"
)

// Metering is what the metered API and the operator API need of the store:
// charges and refunds, idempotent answers and reservations (store.Store).
type Metering interface {
	Charge(ctx context.Context, r store.ChargeRequest) (billing.Debited, *billing.Answer, error)
	Refund(ctx context.Context, r store.RefundRequest) (int64, error)
	Answer(ctx context.Context, id string, now time.Time) (*billing.Answer, error)
	SaveAnswer(ctx context.Context, id string, ans billing.Answer) error
	Reserve(ctx context.Context, r store.ReserveRequest) (store.Reservation, *billing.Answer, error)
	EndReservation(ctx context.Context, id string, charged int64, now time.Time) (store.Reservation, error)
}

var _ Metering = (*store.Store)(nil)

// LeaseCharger serves calls from credit leases (lease.Manager, METER_MODE=lease).
type LeaseCharger interface {
	Charge(ctx context.Context, hash string, cost int64, route string, now time.Time) (billing.Debited, error)
}

// LeaseAdmitter is a LeaseCharger that admits a call into a lease without
// waiting for its use to be recorded (lease.Manager): the pending charge's
// Wait says when the call may be answered. An upstream's call starts at
// once, while its use is recorded.
type LeaseAdmitter interface {
	Admit(ctx context.Context, hash string, cost int64, route string, now time.Time) (*lease.Pending, error)
}

var _ LeaseAdmitter = (*lease.Manager)(nil)

// meter serves the metered routes: /api/meter and those of METER_COSTS
// answer the balance; a path under an upstream prefix is forwarded to the
// operator's service (upstream.go).
func (s *Server) meter(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if path == "/" || path == "" {
		path = "/api/meter" // the function's own URL
	}
	if up := s.upstreamFor(path); up != nil {
		s.forward(w, r, up)
		return
	}
	cost, ok := s.Config.MeterCosts[path]
	if !ok {
		s.Fail(w, r, errNoRoute)
		return
	}
	key, err := apiKey(r)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	idem, err := idempotencyKey(r)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	if !billing.WellFormedKey(key) {
		s.Fail(w, r, billing.ErrInvalidAPIKey)
		return
	}
	answer := func(d billing.Debited) billing.Answer {
		body, _ := json.Marshal(map[string]int64{"credits": d.Remaining})
		return billing.Answer{Status: http.StatusOK, Body: append(body, '\n'), Header: receiptHeader(d.Cost, d.Remaining)}
	}
	d, replay, err := s.charge(r, key, idem, cost, path, path, answer)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	if replay != nil {
		s.replay(w, replay)
		return
	}
	setReceipt(w, d.Cost, d.Remaining)
	httpjson.Write(w, http.StatusOK, map[string]int64{"credits": d.Remaining})
}

// charge is the one check and debit of a metered call (the metered
// routes, upstreams, POST /api/verify): the key check (admitKey: the key
// is live and unexpired, path is within its scopes, the call within its
// rate), then the debit of cost for route from the key's account. A key
// with a daily cap is held to it in the debit's own transaction: it is
// charged by the store's transaction in lease mode too. With an
// Idempotency-Key the charge goes through the store's transaction, in lease
// mode too, so that the answer is stored with the debit; a repeat gets the
// stored answer back (replay non-nil) and is charged nothing (it is still
// checked and counted against the key's rate). answer makes the answer to
// store; nil stores a pending one (an upstream's answer, saved once it is
// known).
func (s *Server) charge(r *http.Request, key, idem string, cost int64, route, path string,
	answer func(billing.Debited) billing.Answer) (billing.Debited, *billing.Answer, error) {
	if idem == "" {
		d, pending, err := s.admitCharge(r, key, cost, route, path)
		if err == nil && pending != nil {
			err = pending.Wait(r.Context())
		}
		if err != nil {
			return billing.Debited{}, nil, err
		}
		return d, nil, nil
	}
	now := s.Clock.Now()
	hash, k, err := s.admitKey(r.Context(), key, path, now)
	if err != nil {
		return billing.Debited{}, nil, err
	}
	if s.Metering == nil {
		return billing.Debited{}, nil, billing.Errorf(billing.CodeUnavailable, "idempotency keys are not served here")
	}
	req := store.ChargeRequest{Hash: hash, Key: &k, Cost: cost, Route: route, RequestID: requestID(r.Context()), Now: now,
		Idem: &store.Idem{ID: store.IdempotencyID(hash, idem), Method: r.Method, Path: r.URL.Path}, Answer: answer}
	return s.Metering.Charge(r.Context(), req)
}

// admitCharge is charge for a call without an Idempotency-Key, that may
// leave the wait for the record to its caller: in lease mode (a key without
// a daily cap) the call is admitted into a lease and pending's Wait says
// whether its use was recorded; the call must not be answered before. The
// refusals (key, rate, credits) come back at once, before any work is done.
// pending is nil when the debit was recorded before admitCharge returned.
func (s *Server) admitCharge(r *http.Request, key string, cost int64, route, path string) (d billing.Debited, pending *lease.Pending, err error) {
	now := s.Clock.Now()
	hash, k, err := s.admitKey(r.Context(), key, path, now)
	if err != nil {
		return billing.Debited{}, nil, err
	}
	capped := k.Limits.CreditsPerDay > 0
	if s.Leases != nil && !capped {
		a, ok := s.Leases.(LeaseAdmitter)
		if !ok {
			d, err = s.Leases.Charge(r.Context(), hash, cost, route, now)
			return d, nil, err
		}
		if pending, err = a.Admit(r.Context(), hash, cost, route, now); err != nil {
			return billing.Debited{}, nil, err
		}
		return pending.Debited, pending, nil
	}
	if s.Metering == nil { // a Meter double alone: no route, no refunds, no caps
		if capped {
			return billing.Debited{}, nil, errors.New("charge: a key with a daily cap needs Server.Metering")
		}
		remaining, err := s.Meter.DebitKey(r.Context(), hash, cost, now)
		return billing.Debited{Cost: cost, Remaining: remaining, Route: route, At: now}, nil, err
	}
	d, _, err = s.Metering.Charge(r.Context(), store.ChargeRequest{Hash: hash, Key: &k, Cost: cost, Route: route,
		RequestID: requestID(r.Context()), Now: now})
	return d, nil, err
}

// awaitAnswer waits for a pending answer to be completed, up to the
// upstream timeout and a margin. It returns nil when the answer is gone
// (the first call was refunded: this one may run), or
// ErrIdempotencyConflict if the first is still running.
func (s *Server) awaitAnswer(ctx context.Context, id string) (*billing.Answer, error) {
	deadline := time.Now().Add(s.Config.UpstreamTimeout + 5*time.Second)
	for {
		ans, err := s.Metering.Answer(ctx, id, s.Clock.Now())
		if err != nil || ans == nil || !ans.Pending {
			return ans, err
		}
		if time.Now().After(deadline) {
			return nil, billing.Errorf(billing.CodeIdempotencyConflict, "a request with this Idempotency-Key is still in progress")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// replay answers with a stored answer, marked Idempotent-Replayed.
func (s *Server) replay(w http.ResponseWriter, ans *billing.Answer) {
	h := w.Header()
	for k, v := range ans.Header {
		h.Set(k, v)
	}
	if ans.RequestID != "" {
		h.Set("X-Request-Id", ans.RequestID) // the receipt is the first call's
	}
	h.Set("Idempotent-Replayed", "true")
	if ans.BodyOmitted {
		h.Set("Idempotent-Body-Omitted", "true")
	}
	h.Del("Content-Length")
	w.WriteHeader(ans.Status)
	if !ans.BodyOmitted {
		_, _ = w.Write(ans.Body)
	}
}

func receiptHeader(cost, remaining int64) map[string]string {
	return map[string]string{"Content-Type": "application/json", "X-Credits-Cost": strconv.FormatInt(cost, 10),
		"X-Credits-Remaining": strconv.FormatInt(remaining, 10)}
}

// setReceipt adds a debited answer's receipt headers.
func setReceipt(w http.ResponseWriter, cost, remaining int64) {
	w.Header().Set("X-Credits-Cost", strconv.FormatInt(cost, 10))
	w.Header().Set("X-Credits-Remaining", strconv.FormatInt(remaining, 10))
}

// idempotencyKey returns the request's Idempotency-Key, "" if none, or a
// CodeBadRequest error for a malformed one.
func idempotencyKey(r *http.Request) (string, error) {
	vs := r.Header.Values("Idempotency-Key")
	if len(vs) == 0 {
		return "", nil
	}
	if len(vs) > 1 {
		return "", billing.Errorf(billing.CodeBadRequest, "send one Idempotency-Key")
	}
	if err := billing.ValidIdempotencyKey(vs[0]); err != nil {
		return "", err
	}
	return vs[0], nil
}

var errNoKey = &billing.Error{Code: billing.CodeInvalidAPIKey,
	Message: "pass an API key as Authorization: Bearer <key>, X-API-Key: <key> or a JSON body {\"key\":\"<key>\"}"}

// apiKey finds the key in the Authorization or X-API-Key header or, for the
// original quickstart's clients, a JSON body {"key": "..."}. A body that is
// present must be a JSON object.
func apiKey(r *http.Request) (string, error) {
	body, err := httpjson.ReadBody(r)
	if err != nil {
		return "", err
	}
	var in struct {
		Key *string `json:"key"`
	}
	if strings.TrimSpace(string(body)) != "" {
		if err := httpjson.DecodeBytes(body, &in, false); err != nil {
			return "", err
		}
	}
	if k, ok := headerKey(r); ok {
		return k, nil
	}
	if in.Key != nil && *in.Key != "" {
		return *in.Key, nil
	}
	return "", errNoKey
}

// headerKey finds the key in the Authorization or X-API-Key header.
func headerKey(r *http.Request) (string, bool) {
	if k, ok := httpjson.Bearer(r); ok {
		return k, true
	}
	if k := strings.TrimSpace(r.Header.Get("X-API-Key")); k != "" {
		return k, true
	}
	return "", false
}
