// Package devstripe is an offline stand-in for Stripe, compiled only into
// the dev server (never into a deployed function): the whole product runs
// and is tested with no network and no Stripe account.
//
// It implements billing.Payments like the Stripe adapter, keeps customers,
// Checkout Sessions, subscriptions, invoices, charges and disputes in
// memory, serves the /dev routes of the HTTP contract (a checkout page, a
// customer portal, actions that renew, fail, refund, dispute, change or
// cancel) and, on each change, sends the event Stripe would send: API
// 2023-10-16 JSON, signed with the webhook secret the way Stripe signs, to
// the real webhook handler, retried until it is accepted. AdvanceTo renews
// the subscriptions whose period ended, like a Stripe test clock.
package devstripe

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/paymeter/paymeter/billing"
)

// Config is what the stand-in needs.
type Config struct {
	// PublicURL is the origin that serves Routes and the web app: checkout
	// and portal pages live under it, and Checkout returns the browser to
	// PublicURL+"/checkout/success" or "/checkout/cancel".
	PublicURL     string
	WebhookSecret string
	// Webhook receives the events in process (the dev server's mux, or the
	// webhook handler itself); if nil they are POSTed to WebhookURL.
	Webhook    http.Handler
	WebhookURL string
	Catalog    billing.Catalog
	Clock      billing.Clock // object and event times; the dev clock
	Log        *slog.Logger  // nil discards
	Random     io.Reader     // ids; crypto/rand.Reader if nil
	// Wait bounds how long a /dev action waits for its events to be
	// delivered before answering 202 (default 10 s).
	Wait time.Duration
}

// Stripe is the stand-in. It is safe for concurrent use; Close stops its
// delivery worker.
type Stripe struct {
	cfg    Config
	prices map[string]price // by lookup key
	client *http.Client

	mu        sync.Mutex
	customers map[string]*customer
	byUID     map[string]string
	sessions  map[string]*session
	subs      map[string]*subscription
	invoices  map[string]*invoice
	charges   map[string]*charge
	disputes  map[string]*dispute
	events    map[string]*sentEvent
	order     map[string][]string // ids by kind, in creation order
	lastEvent int64               // the created time of the newest event

	qmu   sync.Mutex
	queue []*delivery
	busy  *delivery // being delivered
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	close sync.Once
}

var _ billing.Payments = (*Stripe)(nil)

// New returns the stand-in and starts its delivery worker.
func New(cfg Config) *Stripe {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Random == nil {
		cfg.Random = rand.Reader
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 10 * time.Second
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	s := &Stripe{cfg: cfg, prices: map[string]price{}, client: &http.Client{Timeout: 30 * time.Second},
		customers: map[string]*customer{}, byUID: map[string]string{}, sessions: map[string]*session{},
		subs: map[string]*subscription{}, invoices: map[string]*invoice{}, charges: map[string]*charge{},
		disputes: map[string]*dispute{}, events: map[string]*sentEvent{}, order: map[string][]string{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	for _, p := range cfg.Catalog.Plans {
		for _, pr := range p.Prices {
			key := billing.LookupKey(p.Name, pr.Kind)
			sp := price{ID: "price_dev_" + strings.ToLower(p.Name) + "_" + pr.Kind, Object: "price", Active: true,
				Currency: strings.ToLower(pr.Currency), UnitAmount: pr.Amount, LookupKey: key, Type: "one_time",
				Metadata: map[string]string{"plan": p.Name, "kind": pr.Kind}, Product: "paymeter_" + strings.ToLower(p.Name)}
			if pr.Kind == billing.PriceMonthly {
				sp.Type = "recurring"
				sp.Recurring = &recurring{Interval: "month", IntervalCount: 1, UsageType: "licensed"}
			}
			s.prices[key] = sp
		}
	}
	go s.worker()
	return s
}

// Close stops delivering events. Events not yet delivered stay undelivered.
func (s *Stripe) Close() {
	s.close.Do(func() { close(s.stop) })
	<-s.done
}

// Describe says, in one line, what the dev server pays with.
func (s *Stripe) Describe() string {
	to := s.cfg.WebhookURL
	if s.cfg.Webhook != nil || to == "" {
		to = "the webhook handler, in process"
	}
	return fmt.Sprintf("offline Stripe stand-in (no STRIPE_SECRET_KEY): checkout at %s/dev/checkout/…, state at %s/dev/state, signed events to %s",
		s.cfg.PublicURL, s.cfg.PublicURL, to)
}

func (s *Stripe) now() time.Time {
	if s.cfg.Clock != nil {
		return s.cfg.Clock.Now()
	}
	return time.Now()
}

const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newID returns a Stripe-looking id: prefix, underscore, 24 random characters.
func (s *Stripe) newID(prefix string) string {
	b := make([]byte, 24)
	n := big.NewInt(int64(len(idAlphabet)))
	for i := range b {
		k, err := rand.Int(s.cfg.Random, n)
		if err != nil {
			panic(fmt.Sprintf("devstripe: random ids: %v", err))
		}
		b[i] = idAlphabet[k.Int64()]
	}
	return prefix + "_" + string(b)
}

func (s *Stripe) remember(kind, id string) { s.order[kind] = append(s.order[kind], id) }

func errNotFound(what, id string) error {
	return billing.Errorf(billing.CodeNotFound, "no %s %s", what, id)
}

func errConflict(format string, args ...any) error {
	return billing.Errorf(billing.CodeConflict, format, args...)
}
