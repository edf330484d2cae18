// Package api is Paymeter's HTTP layer: the routing table of every Cloud
// Functions entry point, the handlers of the contract in docs (api.md), and
// the middleware they share (errors in the contract's shape, CORS for
// configured origins, body caps, structured request logs).
//
// Every handler reads decode → validate → act → respond and returns early;
// errors carry a billing code that one table maps to a status.
package api

import (
	"io"
	"log/slog"
	"net/http"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
)

// Server holds the dependencies of every handler. Set the fields, then call
// Functions; a nil dependency is only allowed where a function is unused.
type Server struct {
	Config    config.Config
	Catalog   billing.Catalog
	Accounts  billing.Accounts
	History   billing.History
	Keys      billing.KeyStore
	Meter     billing.Meter
	Events    billing.Events
	Scheduler billing.Scheduler
	Payments  billing.Payments
	Webhooks  billing.WebhookVerifier
	Auth      billing.TokenVerifier
	Clock     billing.Clock
	Random    io.Reader // crypto/rand.Reader in production
	Log       *slog.Logger
}

// Function is one Cloud Functions entry point: its name, the paths Hosting
// rewrites to it (the dev server mounts the same), and its handler.
type Function struct {
	Name    string
	Paths   []string
	Handler http.Handler
}

// Functions returns every entry point. Single-route functions answer on any
// path, since Cloud Tasks and Stripe may call a function's own URL.
func (s *Server) Functions() []Function {
	user := newRouter(s)
	user.handle("/api/plans", methods{http.MethodGet: s.plans})
	user.handle("/api/user", methods{http.MethodGet: s.signedIn(s.user)})
	user.handle("/api/keys", methods{http.MethodGet: s.signedIn(s.listKeys), http.MethodPost: s.signedIn(s.createKey)})
	user.handle("/api/keys/{id}", methods{http.MethodDelete: s.signedIn(s.revokeKey)})
	user.handle("/api/usage", methods{http.MethodGet: s.signedIn(s.usage)})
	user.handle("/api/ledger", methods{http.MethodGet: s.signedIn(s.ledger)})

	meterPaths := make([]string, 0, len(s.Config.MeterCosts))
	for p := range s.Config.MeterCosts {
		meterPaths = append(meterPaths, p)
	}
	fns := []Function{
		{Name: "User", Paths: user.paths, Handler: s.wrap(user)},
		{Name: "Meter", Paths: meterPaths, Handler: s.wrap(only(http.MethodPost, s.meter))},
	}
	return append(fns, s.billingFunctions()...)
}

// NotFound answers every request with the contract's 404, for the paths no
// function serves.
func (s *Server) NotFound() http.Handler {
	return s.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.WriteError(w, r, errNoRoute) }))
}
