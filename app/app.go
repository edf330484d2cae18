package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/idtoken"

	"github.com/paymeter/paymeter/api"
	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/firebaseauth"
	"github.com/paymeter/paymeter/lease"
	"github.com/paymeter/paymeter/payments"
	"github.com/paymeter/paymeter/store"
	"github.com/paymeter/paymeter/tasks"
)

// Core is what every deployment shares: the catalog, the Firestore store and
// the ID token verifier.
type Core struct {
	Config  config.Config
	Catalog billing.Catalog
	Store   *store.Store
	Auth    billing.TokenVerifier
	Log     *slog.Logger
	// Leases serves the metered API with METER_MODE=lease, once Server has
	// made it; Close it at shutdown to give its credits back at once.
	Leases *lease.Manager
}

// NewCore connects to Firestore and Firebase Auth (their emulators when
// FIRESTORE_EMULATOR_HOST and FIREBASE_AUTH_EMULATOR_HOST are set).
func NewCore(ctx context.Context, cfg config.Config, log *slog.Logger) (*Core, error) {
	client, err := firestore.NewClient(ctx, cfg.ProjectID)
	if err != nil {
		return nil, fmt.Errorf("firestore client: %w", err)
	}
	return NewCoreOn(ctx, cfg, log, client)
}

// NewCoreOn is NewCore on a Firestore client of the caller's (the dev server
// counts its RPCs).
func NewCoreOn(ctx context.Context, cfg config.Config, log *slog.Logger, client *firestore.Client) (*Core, error) {
	catalog := billing.DefaultCatalog()
	verifier, err := firebaseauth.New(ctx, cfg.ProjectID)
	if err != nil {
		return nil, err
	}
	st := store.New(client, catalog.Free())
	st.RequireVerifiedEmail(cfg.RequireVerifiedEmail)
	return &Core{Config: cfg, Catalog: catalog, Store: st, Auth: verifier, Log: log}, nil
}

// Server returns the API server on c with the given clock, scheduler and
// payment provider.
func (c *Core) Server(clock billing.Clock, sched billing.Scheduler, pay billing.Payments, webhookSecret string) *api.Server {
	var meter billing.Meter = c.Store
	if c.Config.MeterMode == "lease" && c.Leases == nil {
		c.Leases = lease.New(c.Store, clock, lease.Config{TTL: c.Config.LeaseTTL, Idle: c.Config.LeaseIdle,
			MaxBlock: c.Config.LeaseMaxBlock, KeyTTL: c.Config.KeyCacheTTL}, c.Log)
	}
	if c.Leases != nil {
		meter = c.Leases
	}
	return &api.Server{Config: c.Config, Catalog: c.Catalog, Accounts: c.Store, History: c.Store, Keys: c.Store,
		Meter: meter, Events: c.Store, Scheduler: sched, Payments: pay, Webhooks: payments.NewWebhook(webhookSecret),
		Auth: c.Auth, Clock: clock, Random: rand.Reader, Log: c.Log}
}

// TaskFunctions returns the TaskGrant and TaskReconcile entry points, each
// behind guard (OIDC in production, a shared secret locally).
func (c *Core) TaskFunctions(srv *api.Server, guard func(audience string) func(http.Handler) http.Handler) []api.Function {
	grant := tasks.NewGrantHandler(c.Store, srv.Scheduler, srv.Clock, c.Catalog.Free(), c.Log)
	reconcile := tasks.NewReconcileHandler(c.Store, srv.Scheduler, srv.Clock, c.Log)
	return []api.Function{
		{Name: "TaskGrant", Paths: []string{"/api/tasks/grant"}, Handler: srv.Wrap(guard(c.Config.TasksAudience)(grant))},
		{Name: "TaskReconcile", Paths: []string{"/api/tasks/reconcile"}, Handler: srv.Wrap(guard(c.Config.TasksReconcileURL)(reconcile))},
	}
}

// Production returns every entry point as deployed: Cloud Tasks for the Free
// chain, Stripe for payments, OIDC on the task handlers.
func Production(ctx context.Context, cfg config.Config, log *slog.Logger) ([]api.Function, error) {
	core, err := NewCore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	sched, err := tasks.NewCloudTasks(ctx, tasks.CloudTasksConfig{Queue: cfg.TasksQueue, GrantURL: cfg.TasksGrantURL,
		ServiceAccount: cfg.TasksServiceAccount, Audience: cfg.TasksAudience})
	if err != nil {
		return nil, err
	}
	validator, err := idtoken.NewValidator(ctx)
	if err != nil {
		return nil, fmt.Errorf("id token validator: %w", err)
	}
	// Only the functions that call Stripe mount its secrets (terraform/
	// secrets.tf): without STRIPE_SECRET_KEY every Stripe call fails, and
	// without STRIPE_WEBHOOK_SECRET the webhook refuses every event.
	var stripe billing.Payments = noStripe{}
	if cfg.StripeSecretKey != "" {
		stripe = payments.New(payments.Config{SecretKey: cfg.StripeSecretKey, PublicURL: cfg.PublicURL})
	}
	srv := core.Server(realClock{}, sched, stripe, cfg.StripeWebhookSecret)
	guard := func(audience string) func(http.Handler) http.Handler {
		return tasks.RequireOIDC(audience, cfg.TasksServiceAccount, validator, log)
	}
	return append(srv.Functions(), core.TaskFunctions(srv, guard)...), nil
}

// noStripe is the payment provider of a function that has no Stripe key.
type noStripe struct{}

var errNoStripe = errors.New("this function has no STRIPE_SECRET_KEY (terraform/secrets.tf mounts it only where Stripe is called)")

func (noStripe) EnsureCustomer(context.Context, string, string) (string, error) {
	return "", errNoStripe
}
func (noStripe) CheckoutSession(context.Context, billing.CheckoutRequest) (billing.Checkout, error) {
	return billing.Checkout{}, errNoStripe
}
func (noStripe) CancelSubscriptions(context.Context, string) ([]string, error) {
	return nil, errNoStripe
}
func (noStripe) PortalSession(context.Context, string) (string, error) { return "", errNoStripe }
func (noStripe) Charge(context.Context, string) (billing.Charge, error) {
	return billing.Charge{}, errNoStripe
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
