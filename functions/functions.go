// Package functions is Paymeter's Cloud Functions: one file per entry point
// (user.go, meter.go, checkout.go, cancel.go, portal.go, webhook.go,
// tasks.go), the table below of every entry point and its paths, the
// middleware they share (errors in the contract's shape, CORS for
// configured origins, body caps, structured request logs) and the wiring
// that builds each from the configuration (wiring.go). The contract they
// serve is docs/api.md.
//
// The root package registers the table with the Functions Framework; the
// dev server and the tests mount it on one mux with Mux.
//
// Every handler reads decode → validate → act → respond and returns early;
// errors carry a billing code that one table maps to a status (errors.go).
package functions

import (
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/tasks"
)

// Entry is one Cloud Functions entry point as deployed: its name (the
// Functions Framework target, terraform/functions.tf's entry_point), the
// paths Firebase Hosting rewrites to it (firebase.json), whether only
// Google-signed callers may invoke it, and which clients it needs built.
type Entry struct {
	Name    string
	Paths   []string
	Private bool
	Needs   Needs
}

// Needs says which clients an entry point uses, so that a deployed function
// builds those and no others (every one needs Firestore).
type Needs struct {
	Auth      bool // Firebase Auth: it serves signed-in users
	Payments  bool // Stripe: STRIPE_SECRET_KEY
	Webhook   bool // Stripe's events: STRIPE_WEBHOOK_SECRET
	Scheduler bool // Cloud Tasks: it provisions accounts or moves them to Free
	OIDC      bool // Google's token validator: Cloud Tasks and Scheduler call it
}

// Table is every entry point. TestTableIsWhatIsDeployed holds firebase.json
// and terraform/functions.tf to it.
var Table = []Entry{
	{Name: "User", Paths: []string{"/api/plans", "/api/user", "/api/keys", "/api/keys/{id}", "/api/keys/{id}/roll", "/api/usage", "/api/ledger"},
		Needs: Needs{Auth: true, Scheduler: true}},
	{Name: "Meter", Paths: []string{"/api/meter"}}, // and the routes of METER_COSTS
	{Name: "Checkout", Paths: []string{"/api/checkout"}, Needs: Needs{Auth: true, Scheduler: true, Payments: true}},
	{Name: "Cancel", Paths: []string{"/api/cancel"}, Needs: Needs{Auth: true, Scheduler: true, Payments: true}},
	{Name: "Portal", Paths: []string{"/api/portal"}, Needs: Needs{Auth: true, Scheduler: true, Payments: true}},
	{Name: "Webhook", Paths: []string{"/api/stripe/webhook"}, Needs: Needs{Scheduler: true, Payments: true, Webhook: true}},
	{Name: "TaskGrant", Paths: []string{"/api/tasks/grant"}, Private: true, Needs: Needs{Scheduler: true, OIDC: true}},
	{Name: "TaskReconcile", Paths: []string{"/api/tasks/reconcile"}, Private: true, Needs: Needs{Scheduler: true, OIDC: true}},
}

// Lookup returns the entry named name.
func Lookup(name string) (Entry, bool) {
	for _, e := range Table {
		if e.Name == name {
			return e, true
		}
	}
	return Entry{}, false
}

// Function is an entry point with its handler.
type Function struct {
	Entry
	Handler http.Handler
}

// Server holds the dependencies of every handler. Set the fields, then call
// Functions; a nil dependency is only allowed where a function is unused.
type Server struct {
	Config   config.Config
	Catalog  billing.Catalog
	Accounts billing.Accounts
	History  billing.History
	Keys     billing.KeyStore
	Meter    billing.Meter
	// KeyDebits debits for a key already checked: every call in txn mode,
	// capped keys' calls in lease mode. Nil: Meter debits every call.
	KeyDebits billing.KeyDebits
	// Limiter holds keys to their rates; nil: a LocalLimiter.
	Limiter   RateLimiter
	Events    billing.Events
	Scheduler billing.Scheduler
	Payments  billing.Payments
	Webhooks  billing.WebhookVerifier
	Auth      billing.TokenVerifier
	Clock     billing.Clock
	Random    io.Reader // crypto/rand.Reader in production
	Log       *slog.Logger
	// Tasks and TaskGuard serve the task entry points: the store they read
	// and the check of their callers (OIDC in production, a shared secret
	// locally). Without them Functions leaves those entry points out.
	Tasks     TaskStore
	TaskGuard func(audience string) func(http.Handler) http.Handler

	localOnce sync.Once
	local     *LocalLimiter
	keyMu     sync.Mutex
	keyCache  map[string]cachedKey
}

// TaskStore is what the task handlers need of the store.
type TaskStore interface {
	tasks.AccountUpdater
	tasks.OverdueFinder
}

// Functions returns the entry points of Table, in its order, with their
// handlers; only is a name to build that one alone ("" for every one).
// Single-route functions answer on any path, since Cloud Tasks and Stripe
// may call a function's own URL.
func (s *Server) Functions(only ...string) []Function {
	build := map[string]func() http.Handler{
		"User":          s.userHandler,
		"Meter":         func() http.Handler { return s.wrap(onlyMethod(http.MethodPost, s.meter)) },
		"Checkout":      func() http.Handler { return s.wrap(onlyMethod(http.MethodPost, s.signedIn(s.checkout))) },
		"Cancel":        func() http.Handler { return s.wrap(onlyMethod(http.MethodPost, s.signedIn(s.cancel))) },
		"Portal":        func() http.Handler { return s.wrap(onlyMethod(http.MethodPost, s.signedIn(s.portal))) },
		"Webhook":       s.webhookHandler,
		"TaskGrant":     s.grantHandler,
		"TaskReconcile": s.reconcileHandler,
	}
	var fns []Function
	for _, e := range Table {
		if len(only) > 0 && only[0] != "" && only[0] != e.Name {
			continue
		}
		if e.Private && (s.Tasks == nil || s.TaskGuard == nil) {
			continue
		}
		if e.Name == "Meter" {
			e.Paths = s.meterPaths()
		}
		fns = append(fns, Function{Entry: e, Handler: build[e.Name]()})
	}
	return fns
}

// Mount serves fns on mux at their paths, on one origin as Hosting's
// rewrites do, and answers every other /api/ path with the contract's 404.
// The dev server and the tests use it.
func (s *Server) Mount(mux *http.ServeMux, fns []Function) {
	for _, f := range fns {
		for _, p := range f.Paths {
			mux.Handle(p, f.Handler)
		}
	}
	mux.Handle("/api/", s.NotFound())
}

// meterPaths are the metered routes: /api/meter and those of METER_COSTS.
func (s *Server) meterPaths() []string {
	paths := make([]string, 0, len(s.Config.MeterCosts))
	for p := range s.Config.MeterCosts {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// NotFound answers every request with the contract's 404, for the paths no
// function serves.
func (s *Server) NotFound() http.Handler {
	return s.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.Fail(w, r, errNoRoute) }))
}
