package functions

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
	"github.com/paymeter/paymeter/store"
)

// The operator API (docs/api.md, "Operator API"): the operator's own
// backends, in any language, verify keys and spend credits server to
// server, with the operator secret (PAYMETER_OPERATOR_SECRET). With no
// secret set, these routes do not exist (404).

func (s *Server) operatorHandler() http.Handler {
	op := newRouter(s)
	op.handle("/api/verify", methods{http.MethodPost: s.operator(s.verify)})
	op.handle("/api/reservations", methods{http.MethodPost: s.operator(s.reserve)})
	op.handle("/api/reservations/{id}", methods{http.MethodDelete: s.operator(s.release)})
	op.handle("/api/reservations/{id}/settle", methods{http.MethodPost: s.operator(s.settle)})
	return s.wrap(op)
}

var errOperatorSecret = &billing.Error{Code: billing.CodeUnauthenticated,
	Message: "pass the operator secret as Authorization: Bearer <PAYMETER_OPERATOR_SECRET>"}

// operator admits only callers with the operator secret.
func (s *Server) operator(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.Config.OperatorSecret == "" {
			s.Fail(w, r, errNoRoute)
			return
		}
		got, _ := httpjson.Bearer(r)
		a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(s.Config.OperatorSecret))
		if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
			s.Fail(w, r, errOperatorSecret)
			return
		}
		h(w, r)
	}
}

// verify serves POST /api/verify {"key","cost","route"}: debit and answer.
func (s *Server) verify(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Key   string `json:"key"`
		Cost  *int64 `json:"cost"`
		Route string `json:"route"`
	}
	if err := httpjson.Decode(r, &in); err != nil {
		s.Fail(w, r, err)
		return
	}
	idem, err := idempotencyKey(r)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	if err := validRoute(in.Route); err != nil {
		s.Fail(w, r, err)
		return
	}
	cost := s.routeCost(in.Route)
	if in.Cost != nil {
		cost = *in.Cost
	}
	if cost < 1 || cost > 1_000_000 {
		s.Fail(w, r, billing.Errorf(billing.CodeBadRequest, "cost is 1 to 1000000"))
		return
	}
	if !billing.WellFormedKey(in.Key) {
		s.Fail(w, r, billing.ErrInvalidAPIKey)
		return
	}
	route := in.Route
	if route == "" {
		route = "/api/verify"
	}
	verified := func(d billing.Debited) map[string]any {
		return map[string]any{"allowed": true, "account": d.UID, "keyId": d.KeyID, "cost": d.Cost, "credits": d.Remaining}
	}
	answer := func(d billing.Debited) billing.Answer {
		body, _ := json.Marshal(verified(d))
		return billing.Answer{Status: http.StatusOK, Body: append(body, '\n'), Header: receiptHeader(d.Cost, d.Remaining)}
	}
	d, replay, err := s.charge(r, in.Key, idem, cost, route, route, answer)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	if replay != nil {
		s.replay(w, replay)
		return
	}
	setReceipt(w, d.Cost, d.Remaining)
	httpjson.Write(w, http.StatusOK, verified(d))
}

// routeCost is the cost the operator set for route: its METER_COSTS entry,
// else that of the upstream it falls under, else 1.
func (s *Server) routeCost(route string) int64 {
	if c, ok := s.Config.MeterCosts[route]; ok {
		return c
	}
	if u := s.upstreamFor(route); u != nil {
		if c, ok := s.Config.MeterCosts[u.Prefix]; ok {
			return c
		}
	}
	return 1
}

func validRoute(route string) error {
	if route == "" {
		return nil
	}
	if !strings.HasPrefix(route, "/") || len(route) > 200 {
		return billing.Errorf(billing.CodeBadRequest, "route is a path of up to 200 characters, like /v1/search")
	}
	for _, c := range route {
		if c > unicode.MaxASCII || !unicode.IsPrint(c) || c == ' ' {
			return billing.Errorf(billing.CodeBadRequest, "route is a path of printable ASCII characters, like /v1/search")
		}
	}
	return nil
}

type reservationOut struct {
	ID        string    `json:"id"`
	Account   string    `json:"account"`
	Credits   int64     `json:"credits"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// reserve serves POST /api/reservations {"key","credits","ttlSeconds"}.
func (s *Server) reserve(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Key        string `json:"key"`
		Credits    int64  `json:"credits"`
		TTLSeconds *int64 `json:"ttlSeconds"`
	}
	if err := httpjson.Decode(r, &in); err != nil {
		s.Fail(w, r, err)
		return
	}
	idem, err := idempotencyKey(r)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	ttl := int64(300)
	if in.TTLSeconds != nil {
		ttl = *in.TTLSeconds
	}
	switch {
	case in.Credits < 1 || in.Credits > 1_000_000:
		s.Fail(w, r, billing.Errorf(billing.CodeBadRequest, "credits is 1 to 1000000"))
		return
	case ttl < 1 || ttl > 3600:
		s.Fail(w, r, billing.Errorf(billing.CodeBadRequest, "ttlSeconds is 1 to 3600"))
		return
	case !billing.WellFormedKey(in.Key):
		s.Fail(w, r, billing.ErrInvalidAPIKey)
		return
	}
	// The key check of metered calls, with no route: a reservation names
	// none, so the key's scopes are not checked (nor its daily cap).
	if _, _, err := s.admitKey(r.Context(), in.Key, "", s.Clock.Now()); err != nil {
		s.Fail(w, r, err)
		return
	}
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		s.Fail(w, r, err)
		return
	}
	hash := billing.HashKey(in.Key)
	out := func(res store.Reservation) reservationOut {
		return reservationOut{ID: res.ID, Account: res.UID, Credits: res.Credits, ExpiresAt: res.ExpiresAt.UTC()}
	}
	req := store.ReserveRequest{Hash: hash, ID: "res_" + hex.EncodeToString(b), Credits: in.Credits,
		TTL: time.Duration(ttl) * time.Second, Now: s.Clock.Now(), RequestID: requestID(r.Context()),
		Answer: func(res store.Reservation) billing.Answer {
			body, _ := json.Marshal(out(res))
			return billing.Answer{Status: http.StatusCreated, Body: append(body, '\n'),
				Header: map[string]string{"Content-Type": "application/json"}}
		}}
	if idem != "" {
		req.Idem = &store.Idem{ID: store.IdempotencyID(hash, idem), Method: r.Method, Path: r.URL.Path}
	}
	res, replay, err := s.Metering.Reserve(r.Context(), req)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	if replay != nil {
		s.replay(w, replay)
		return
	}
	httpjson.Write(w, http.StatusCreated, out(res))
}

// settle serves POST /api/reservations/{id}/settle {"credits": N}.
func (s *Server) settle(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Credits *int64 `json:"credits"`
	}
	if err := httpjson.Decode(r, &in); err != nil {
		s.Fail(w, r, err)
		return
	}
	if in.Credits == nil || *in.Credits < 0 {
		s.Fail(w, r, billing.Errorf(billing.CodeBadRequest, `send {"credits": N}, N from 0 to the credits held`))
		return
	}
	s.endReservation(w, r, *in.Credits)
}

// release serves DELETE /api/reservations/{id}: nothing is charged.
func (s *Server) release(w http.ResponseWriter, r *http.Request) {
	b, err := httpjson.ReadBody(r)
	if err == nil && len(bytes.TrimSpace(b)) > 0 {
		err = httpjson.DecodeBytes(b, &struct{}{}, true)
	}
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	s.endReservation(w, r, 0)
}

func (s *Server) endReservation(w http.ResponseWriter, r *http.Request, charged int64) {
	id := r.PathValue("id")
	if !strings.HasPrefix(id, "res_") || len(id) > 64 {
		s.Fail(w, r, billing.ErrNotFound)
		return
	}
	res, err := s.Metering.EndReservation(r.Context(), id, charged, s.Clock.Now())
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]int64{"charged": res.Charged, "released": res.Released, "credits": res.Balance})
}
