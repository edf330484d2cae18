package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/devstripe"
	"github.com/paymeter/paymeter/payments"
)

// newPayments returns the dev server's payment provider and the secret its
// webhook events are signed with: Stripe itself in test mode when
// STRIPE_SECRET_KEY is set, the offline stand-in otherwise.
func newPayments(_ context.Context, cfg config.Config, d *devServer) (devPayments, string, error) {
	if cfg.StripeSecretKey != "" {
		if cfg.StripeWebhookSecret == "" {
			return nil, "", fmt.Errorf("with STRIPE_SECRET_KEY, set STRIPE_WEBHOOK_SECRET to the secret `stripe listen` prints")
		}
		s := payments.New(payments.Config{SecretKey: cfg.StripeSecretKey, PublicURL: cfg.PublicURL})
		return testMode{Stripe: s, port: cfg.Port}, cfg.StripeWebhookSecret, nil
	}
	secret := cfg.StripeWebhookSecret
	if secret == "" {
		secret = config.DevWebhookSecret
	}
	stand := devstripe.New(devstripe.Config{PublicURL: cfg.PublicURL, WebhookSecret: secret, Webhook: d.mux,
		Catalog: d.catalog, Clock: d.clock, Log: d.log})
	return stand, secret, nil
}

// testMode is Stripe itself: no /dev routes, and Stripe's own clock.
type testMode struct {
	*payments.Stripe
	port string
}

func (testMode) Routes() http.Handler                       { return nil }
func (testMode) AdvanceTo(context.Context, time.Time) error { return nil }
func (t testMode) Describe() string {
	return "Stripe in test mode (STRIPE_SECRET_KEY is set); forward its events with: stripe listen --forward-to localhost:" +
		t.port + "/api/stripe/webhook"
}
