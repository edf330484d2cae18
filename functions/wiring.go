package functions

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/oauth2"
	"google.golang.org/api/idtoken"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/firebaseauth"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/lease"
	"github.com/paymeter/paymeter/notify"
	"github.com/paymeter/paymeter/payments"
	"github.com/paymeter/paymeter/ratelimit"
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
	// Mailer and Webhook deliver notices (SMTP_URL, OPERATOR_WEBHOOK_URL;
	// nil when unset); Notices schedules them, once UseNotices is called.
	Mailer   notify.Mailer
	Webhook  *notify.Webhook
	Notices  billing.NoticeScheduler
	Dispatch *notify.Dispatcher
}

// UseNotices makes every committed change that makes notices schedule
// their delivery on sched, in the background.
func (c *Core) UseNotices(sched billing.NoticeScheduler) {
	c.Notices = sched
	c.Dispatch = notify.NewDispatcher(sched, c.Log)
	c.Store.OnNotices(c.Dispatch.Dispatch)
}

// NewCoreOn connects to Firebase Auth and returns the core on a Firestore
// client of the caller's (the dev server counts its RPCs). Both use their
// emulators when FIRESTORE_EMULATOR_HOST and FIREBASE_AUTH_EMULATOR_HOST
// are set.
func NewCoreOn(ctx context.Context, cfg config.Config, log *slog.Logger, client *firestore.Client) (*Core, error) {
	return newCore(ctx, cfg, log, client, true, true)
}

func newCore(ctx context.Context, cfg config.Config, log *slog.Logger, client *firestore.Client, withAuth, withMail bool) (*Core, error) {
	catalog := billing.DefaultCatalog()
	st := store.New(client, catalog.Free())
	st.RequireVerifiedEmail(cfg.RequireVerifiedEmail)
	c := &Core{Config: cfg, Catalog: catalog, Store: st, Log: log}
	if withMail && cfg.SMTPURL != "" {
		m, err := notify.NewSMTP(cfg.SMTPURL, cfg.MailFrom)
		if err != nil {
			return nil, err
		}
		c.Mailer = m
	}
	if withMail && cfg.OperatorWebhookURL != "" {
		c.Webhook = &notify.Webhook{URL: cfg.OperatorWebhookURL, Secret: cfg.OperatorWebhookSecret}
	}
	if withAuth {
		verifier, err := firebaseauth.New(ctx, cfg.ProjectID)
		if err != nil {
			return nil, err
		}
		c.Auth = verifier
	}
	return c, nil
}

// Server returns the API server on c with the given clock, scheduler and
// payment provider.
func (c *Core) Server(clock billing.Clock, sched billing.Scheduler, pay billing.Payments, webhookSecret string) *Server {
	var meter billing.Meter = c.Store
	if c.Config.MeterMode == "lease" && c.Leases == nil {
		c.Leases = lease.New(c.Store, clock, lease.Config{TTL: c.Config.LeaseTTL, Idle: c.Config.LeaseIdle,
			MaxBlock: c.Config.LeaseMaxBlock, KeyTTL: c.Config.KeyCacheTTL}, c.Log)
	}
	if c.Leases != nil {
		meter = c.Leases
	}
	srv := &Server{Config: c.Config, Catalog: c.Catalog, Accounts: c.Store, History: c.Store, Keys: c.Store,
		Meter: meter, Events: c.Store, Scheduler: sched, Payments: pay, Webhooks: payments.NewWebhook(webhookSecret),
		Auth: c.Auth, Clock: clock, Random: rand.Reader, Log: c.Log, Tasks: c.Store, Metering: c.Store,
		Outbox: c.Store, Mailer: c.Mailer, OperatorWebhook: c.Webhook, Notices: c.Notices,
		Limiter: ratelimit.New(c.Store, clock, ratelimit.Config{}, c.Log)}
	if c.Leases != nil {
		srv.Leases = c.Leases
	}
	return srv
}

// shutdownGrace is how long a SIGTERM leaves the lease manager to return
// its leases: Cloud Run kills the instance 10 s after SIGTERM.
const shutdownGrace = 8 * time.Second

// returnLeasesOnSIGTERM waits for the SIGTERM that Cloud Run sends before
// it stops an instance (with CPU for its 10 s grace, also under
// request-based billing), returns every lease within shutdownGrace and
// exits. The Functions Framework does not handle SIGTERM itself; without
// this the leases would be settled from the journal when they expire.
func returnLeasesOnSIGTERM(leases *lease.Manager, log *slog.Logger) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	start := time.Now()
	if err := leases.Close(ctx); err != nil {
		log.Error("SIGTERM: leases not all returned; they are settled from the journal when they expire", "err", err)
	} else {
		log.Info("SIGTERM: leases returned", "took", time.Since(start).String())
	}
	os.Exit(0)
}

// Production returns the entry point named target as deployed, or every
// one when target is "", building only the clients they need (Entry.Needs):
// Firestore always; Firebase Auth, Stripe, Cloud Tasks and Google's ID
// token validator only where used, so that the Meter, say, starts without
// a Stripe client, and with Cloud Tasks only to schedule its notices (with
// TASKS_NOTIFY_URL set); SMTP and the operator's webhook only in TaskNotify.
func Production(ctx context.Context, cfg config.Config, log *slog.Logger, target string) ([]Function, error) {
	var needs Needs
	for _, e := range Table {
		if target == "" || e.Name == target {
			needs = Needs{Auth: needs.Auth || e.Needs.Auth, Payments: needs.Payments || e.Needs.Payments,
				Webhook: needs.Webhook || e.Needs.Webhook, Scheduler: needs.Scheduler || e.Needs.Scheduler, OIDC: needs.OIDC || e.Needs.OIDC,
				Notices: needs.Notices || e.Needs.Notices, Mail: needs.Mail || e.Needs.Mail}
		}
	}
	if _, ok := Lookup(target); target != "" && !ok {
		return nil, fmt.Errorf("FUNCTION_TARGET %q is no entry point of functions.Table", target)
	}
	client, err := firestore.NewClient(ctx, cfg.ProjectID)
	if err != nil {
		return nil, fmt.Errorf("firestore client: %w", err)
	}
	core, err := newCore(ctx, cfg, log, client, needs.Auth, needs.Mail)
	if err != nil {
		return nil, err
	}
	var sched billing.Scheduler
	if needs.Scheduler || needs.Notices && cfg.TasksNotifyURL != "" {
		ct, err := tasks.NewCloudTasks(ctx, tasks.CloudTasksConfig{Queue: cfg.TasksQueue, GrantURL: cfg.TasksGrantURL,
			ServiceAccount: cfg.TasksServiceAccount, Audience: cfg.TasksAudience,
			NotifyURL: cfg.TasksNotifyURL, NotifyQueue: cfg.TasksNotifyQueue})
		if err != nil {
			return nil, err
		}
		if needs.Scheduler {
			sched = ct
		}
		if needs.Notices && cfg.TasksNotifyURL != "" {
			core.UseNotices(ct)
		}
	}
	var pay billing.Payments
	// Terraform mounts each Stripe secret only where it is needed
	// (terraform/functions.tf): the key where Stripe is called, the signing
	// secret on the webhook.
	if needs.Payments {
		if cfg.StripeSecretKey == "" {
			return nil, fmt.Errorf("STRIPE_SECRET_KEY must be set (from Secret Manager)")
		}
		pay = payments.New(payments.Config{SecretKey: cfg.StripeSecretKey, PublicURL: cfg.PublicURL})
	}
	if needs.Webhook && cfg.StripeWebhookSecret == "" {
		return nil, fmt.Errorf("STRIPE_WEBHOOK_SECRET must be set (from Secret Manager)")
	}
	srv := core.Server(clock.Real{}, sched, pay, cfg.StripeWebhookSecret)
	if core.Leases != nil {
		go returnLeasesOnSIGTERM(core.Leases, log)
	}
	if (target == "" || target == "Meter") && len(cfg.Upstreams) > 0 {
		tokens, err := upstreamTokens(ctx, cfg.Upstreams)
		if err != nil {
			return nil, err
		}
		srv.UpstreamToken = tokens
	}
	if needs.OIDC {
		validator, err := idtoken.NewValidator(ctx)
		if err != nil {
			return nil, fmt.Errorf("id token validator: %w", err)
		}
		srv.TaskGuard = func(audience string) func(http.Handler) http.Handler {
			return tasks.RequireOIDC(audience, cfg.TasksServiceAccount, validator, log)
		}
	}
	return srv.Functions(target), nil
}

// upstreamTokens returns Google ID tokens for the upstreams' URLs (Cloud
// Run's audience is the service URL), one cached token source per upstream,
// made once at start-up.
func upstreamTokens(ctx context.Context, ups []config.Upstream) (func(context.Context, string) (string, error), error) {
	sources := map[string]oauth2.TokenSource{}
	for _, u := range ups {
		aud := audience(u)
		ts, err := idtoken.NewTokenSource(ctx, aud)
		if err != nil {
			return nil, fmt.Errorf("id token source for %s: %w", u.Prefix, err)
		}
		sources[aud] = ts
	}
	return func(_ context.Context, audience string) (string, error) {
		ts, ok := sources[audience]
		if !ok {
			return "", fmt.Errorf("no token source for %s", audience)
		}
		tok, err := ts.Token()
		if err != nil {
			return "", err
		}
		return tok.AccessToken, nil
	}, nil
}
