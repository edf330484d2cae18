// Package functions is Paymeter's Cloud Functions: one file per entry point
// (user.go with notifications.go, meter.go, checkout.go, cancel.go,
// portal.go, webhook.go, tasks.go), the table below of every entry point and its paths, the
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
	"context"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/notify"
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
	Notices   bool // the notice scheduler (Cloud Tasks): its account changes may make notices
	Mail      bool // SMTP and the operator's webhook: it delivers notices
}

// Table is every entry point. TestTableIsWhatIsDeployed holds firebase.json
// and terraform/functions.tf to it.
var Table = []Entry{
	{Name: "User", Paths: []string{"/api/plans", "/api/user", "/api/keys", "/api/keys/{id}", "/api/keys/{id}/roll", "/api/usage", "/api/ledger", "/api/notifications"},
		Needs: Needs{Auth: true, Scheduler: true, Notices: true}},
	{Name: "Meter", Paths: []string{"/api/meter"}, Needs: Needs{Notices: true}}, // and the routes of METER_COSTS and prefixes of METER_UPSTREAMS
	{Name: "Operator", Paths: []string{"/api/verify", "/api/reservations", "/api/reservations/{id}", "/api/reservations/{id}/settle"}, Needs: Needs{Notices: true}},
	{Name: "Checkout", Paths: []string{"/api/checkout"}, Needs: Needs{Auth: true, Scheduler: true, Payments: true, Notices: true}},
	{Name: "Cancel", Paths: []string{"/api/cancel"}, Needs: Needs{Auth: true, Scheduler: true, Payments: true, Notices: true}},
	{Name: "Portal", Paths: []string{"/api/portal"}, Needs: Needs{Auth: true, Scheduler: true, Payments: true, Notices: true}},
	{Name: "Webhook", Paths: []string{"/api/stripe/webhook"}, Needs: Needs{Scheduler: true, Payments: true, Webhook: true, Notices: true}},
	{Name: "TaskGrant", Paths: []string{"/api/tasks/grant"}, Private: true, Needs: Needs{Scheduler: true, OIDC: true, Notices: true}},
	{Name: "TaskReconcile", Paths: []string{"/api/tasks/reconcile"}, Private: true, Needs: Needs{Scheduler: true, OIDC: true, Notices: true}},
	{Name: "TaskNotify", Paths: []string{"/api/tasks/notify"}, Private: true, Needs: Needs{OIDC: true, Mail: true}},
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
	// Outbox, Mailer and OperatorWebhook serve TaskNotify, the delivery of
	// notices; a nil Mailer or OperatorWebhook leaves that channel out.
	// Notices schedules deliveries (the reconcile sweep re-sends lost ones).
	Outbox          NoticeStore
	Mailer          notify.Mailer
	OperatorWebhook *notify.Webhook
	Notices         billing.NoticeScheduler
	// Metering serves charges with refunds, idempotent answers and
	// reservations (the store); Leases, if set, serves the calls that carry
	// no Idempotency-Key from credit leases (METER_MODE=lease).
	Metering Metering
	Leases   LeaseCharger
	// UpstreamToken returns a Google ID token for an upstream URL (Cloud Run
	// service-to-service); nil locally, where upstreams get none.
	UpstreamToken func(ctx context.Context, audience string) (string, error)

	upstreams []*upstream

	localOnce sync.Once
	local     *LocalLimiter
	keyMu     sync.Mutex
	keyCache  map[string]cachedKey
}

// NoticeStore is what the delivery of notices and its sweep need.
type NoticeStore interface {
	notify.Outbox
	notify.PendingFinder
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
		"Meter":         s.meterHandler,
		"Operator":      s.operatorHandler,
		"Checkout":      func() http.Handler { return s.wrap(onlyMethod(http.MethodPost, s.signedIn(s.checkout))) },
		"Cancel":        func() http.Handler { return s.wrap(onlyMethod(http.MethodPost, s.signedIn(s.cancel))) },
		"Portal":        func() http.Handler { return s.wrap(onlyMethod(http.MethodPost, s.signedIn(s.portal))) },
		"Webhook":       s.webhookHandler,
		"TaskGrant":     s.grantHandler,
		"TaskReconcile": s.reconcileHandler,
		"TaskNotify":    s.notifyHandler,
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

// meterPaths are the metered routes: /api/meter, those of METER_COSTS and
// the prefixes of METER_UPSTREAMS (with what lies below them).
func (s *Server) meterPaths() []string {
	seen := map[string]bool{}
	for p := range s.Config.MeterCosts {
		seen[p] = true
	}
	for _, u := range s.Config.Upstreams {
		seen[u.Prefix] = true
		if !strings.HasSuffix(u.Prefix, "/") {
			seen[u.Prefix+"/"] = true
		}
	}
	paths := make([]string, 0, len(seen))
	for p := range seen {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// meterHandler serves the metered routes: POST for /api/meter and the
// routes of METER_COSTS, any method for the upstreams'.
func (s *Server) meterHandler() http.Handler {
	s.buildUpstreams()
	post := onlyMethod(http.MethodPost, s.meter)
	return s.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.upstreamFor(r.URL.Path) != nil {
			s.meter(w, r)
			return
		}
		post.ServeHTTP(w, r)
	}))
}

// NotFound answers every request with the contract's 404, for the paths no
// function serves.
func (s *Server) NotFound() http.Handler {
	return s.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.Fail(w, r, errNoRoute) }))
}
