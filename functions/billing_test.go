package functions_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/devstripe"
	"github.com/paymeter/paymeter/functions"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/emulator"
	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/payments"
	"github.com/paymeter/paymeter/store"
)

// The billing tests run each case on two stores: an in-memory double of the
// store's contract (fast, always) and the real store on the Firestore
// emulator (skipped without it, failing under CI=true). Stripe is the
// offline stand-in, which sends the events Stripe would, signed.

const whsec = "whsec_billing_test"

// backend is what the billing handlers need of a store.
type backend interface {
	billing.Accounts
	billing.Events
	billing.History
}

// backends runs fn once per store.
func backends(t *testing.T, fn func(t *testing.T, newStore func() backend)) {
	t.Run("memory", func(t *testing.T) { fn(t, func() backend { return mock.NewStore() }) })
	t.Run("firestore", func(t *testing.T) {
		emulator.Firestore(t)
		fn(t, func() backend {
			client, err := firestore.NewClient(context.Background(), fmt.Sprintf("demo-billing-%d", time.Now().UnixNano()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { client.Close() })
			return store.New(client, billing.DefaultCatalog().Free())
		})
	})
}

// countingPayments records the calls that change things at the provider.
type countingPayments struct {
	billing.Payments
	mu        sync.Mutex
	cancels   int
	customers int
}

func (p *countingPayments) CancelSubscriptions(ctx context.Context, customerID string) ([]string, error) {
	p.mu.Lock()
	p.cancels++
	p.mu.Unlock()
	return p.Payments.CancelSubscriptions(ctx, customerID)
}

func (p *countingPayments) EnsureCustomer(ctx context.Context, uid, email string) (string, error) {
	p.mu.Lock()
	p.customers++
	p.mu.Unlock()
	return p.Payments.EnsureCustomer(ctx, uid, email)
}

// world is the API server on a store, with the Stripe stand-in delivering
// its events to the server's own webhook.
type world struct {
	t     testing.TB
	st    backend
	clock *clock.Fixed
	sched *mock.Scheduler
	pay   *countingPayments
	dev   *devstripe.Stripe
	mux   *http.ServeMux
	logs  *bytes.Buffer
}

func newWorld(t testing.TB, st backend, deliver bool, sched ...billing.Scheduler) *world {
	t.Helper()
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"PUBLIC_URL": "http://paymeter.test"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, st: st, clock: clock.NewFixed(t0), sched: &mock.Scheduler{}, mux: http.NewServeMux(), logs: &bytes.Buffer{}}
	var hook http.Handler = w.mux
	if !deliver {
		hook = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}) // accepted, applied nowhere
	}
	w.dev = devstripe.New(devstripe.Config{PublicURL: "http://paymeter.test", WebhookSecret: whsec, Webhook: hook,
		Catalog: billing.DefaultCatalog(), Clock: w.clock})
	t.Cleanup(w.dev.Close)
	w.pay = &countingPayments{Payments: w.dev}
	var scheduler billing.Scheduler = w.sched
	if len(sched) > 0 {
		scheduler = sched[0]
	}
	srv := &functions.Server{Config: cfg, Catalog: billing.DefaultCatalog(), Accounts: st, History: st, Events: st,
		Scheduler: scheduler, Payments: w.pay, Webhooks: payments.NewWebhook(whsec), Auth: tokens{}, Clock: w.clock,
		Random: rand.Reader, Log: slog.New(slog.NewTextHandler(w.logs, nil))}
	srv.Mount(w.mux, srv.Functions())
	w.mux.Handle("/dev/", w.dev.Routes())
	return w
}

func (w *world) do(method, path, body string, header ...string) response {
	w.t.Helper()
	return serve(w.mux, method, path, body, header...)
}

func (w *world) as(uid, method, path, body string) response {
	w.t.Helper()
	return w.do(method, path, body, "Authorization", "Bearer token-"+uid)
}

func (w *world) must(res response, status int) response {
	w.t.Helper()
	if res.status != status {
		w.t.Fatalf("status %d, want %d: %s", res.status, status, res.raw)
	}
	return res
}

// devState reads the stand-in's /dev/state.
func (w *world) devState() map[string][]map[string]any {
	w.t.Helper()
	var out map[string][]map[string]any
	if err := json.Unmarshal([]byte(w.must(w.do("GET", "/dev/state", ""), 200).raw), &out); err != nil {
		w.t.Fatal(err)
	}
	return out
}

func (w *world) last(kind string) map[string]any {
	w.t.Helper()
	items := w.devState()[kind]
	if len(items) == 0 {
		w.t.Fatalf("no %s in the stand-in", kind)
	}
	return items[len(items)-1]
}

// checkout starts and pays a checkout of plan for uid.
func (w *world) checkout(uid, plan string, subscribe bool) {
	w.t.Helper()
	res := w.must(w.as(uid, "POST", "/api/checkout", fmt.Sprintf(`{"plan":%q,"subscribe":%v}`, plan, subscribe)), 200)
	id, _ := res.body["sessionId"].(string)
	if id == "" || res.body["url"] != "http://paymeter.test/dev/checkout/"+id {
		w.t.Fatalf("checkout answered %s", res.raw)
	}
	w.must(w.do("POST", "/dev/checkout/"+id+"/complete", ""), 200)
}

func (w *world) user(uid string) map[string]any {
	w.t.Helper()
	return w.must(w.as(uid, "GET", "/api/user", ""), 200).body["user"].(map[string]any)
}

func (w *world) advance(d time.Duration) {
	w.t.Helper()
	w.clock.Set(w.clock.Now().Add(d))
	if err := w.dev.AdvanceTo(context.Background(), w.clock.Now()); err != nil {
		w.t.Fatal(err)
	}
}

// snapshot is what a user and the ledger show of an account.
type snapshot struct {
	Plan         string
	Credits      int64
	Subscription billing.Subscription
	Grants       []string
	NextGrantAt  time.Time
	Ledger       []string
}

func snap(t *testing.T, st backend, uid string, now time.Time) snapshot {
	t.Helper()
	a, err := st.Account(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	s := snapshot{Plan: a.Plan, Credits: a.Balance(now), NextGrantAt: a.NextGrantAt.UTC()}
	if a.Subscription != nil {
		s.Subscription = *a.Subscription
		s.Subscription.UpdatedAt = s.Subscription.UpdatedAt.UTC()
		s.Subscription.CurrentPeriodEnd = s.Subscription.CurrentPeriodEnd.UTC()
	}
	for _, g := range a.LiveGrants(now) {
		s.Grants = append(s.Grants, fmt.Sprintf("%s %s %d/%d", g.ID, g.Source, g.Remaining, g.Amount))
	}
	sort.Strings(s.Grants)
	entries, err := st.Ledger(context.Background(), uid, 500)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		s.Ledger = append(s.Ledger, fmt.Sprintf("%s %+d %s", e.ID, e.Credits, e.Note))
	}
	sort.Strings(s.Ledger)
	return s
}

// record runs a lifecycle on the stand-in, its events accepted by a webhook
// that applies nothing, and returns the signed-body payloads in the order
// sent, with the customer id.
func record(t *testing.T, steps func(w *world, uid string)) (rec *world, customer string, payloads [][]byte, end time.Time) {
	t.Helper()
	w := newWorld(t, mock.NewStore(), false)
	steps(w, "u1")
	if err := w.dev.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range w.dev.EventIDs() {
		p, _ := w.dev.Payload(id)
		payloads = append(payloads, p)
	}
	a, err := w.st.Account(context.Background(), "u1")
	if err != nil {
		t.Fatal(err)
	}
	return w, a.CustomerID, payloads, w.clock.Now()
}

// replay delivers payloads, in the order given, to a fresh server on st
// whose account u1 has customer, at the clock time now. The server's
// payment provider is the stand-in that recorded them (disputes read their
// charge from it).
func replay(t *testing.T, rec *world, st backend, customer string, payloads [][]byte, now time.Time) snapshot {
	t.Helper()
	w := newWorld(t, st, true)
	w.pay.Payments = rec.dev
	w.clock.Set(t0)
	ctx := context.Background()
	if _, _, err := st.Provision(ctx, billing.Identity{UID: "u1", Email: "u1@example.com"}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateAccount(ctx, "u1", func(a *billing.Account) error { a.CustomerID = customer; return nil }); err != nil {
		t.Fatal(err)
	}
	w.clock.Set(now)
	for _, p := range payloads {
		res := w.deliver(p, time.Now())
		if res.status != 200 {
			t.Fatalf("delivery answered %d: %s\n%s", res.status, res.raw, w.logs)
		}
	}
	return snap(t, st, "u1", now)
}

func (w *world) deliver(payload []byte, signedAt time.Time) response {
	w.t.Helper()
	sig := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: whsec, Timestamp: signedAt}).Header
	return w.do("POST", "/api/stripe/webhook", string(payload), "Stripe-Signature", sig, "Content-Type", "application/json")
}

const month = 30 * 24 * time.Hour

// The lifecycles of the issue, as the stand-in runs them.
var lifecycles = map[string]func(w *world, uid string){
	// Subscribe to Basic, renew three times, upgrade to Power in the portal,
	// a failed renewal, cancel at period end in the portal, the period ends.
	"subscription": func(w *world, uid string) {
		w.checkout(uid, "Basic", true)
		sub := w.last("subscriptions")["id"].(string)
		w.advance(31 * 24 * time.Hour) // renewal 1, by the test clock
		w.advance(31 * 24 * time.Hour) // renewal 2
		w.clock.Set(w.clock.Now().Add(24 * time.Hour))
		w.must(w.do("POST", "/dev/subscriptions/"+sub+"/renew", ""), 200) // renewal 3, by hand
		w.clock.Set(w.clock.Now().Add(10 * 24 * time.Hour))
		w.must(w.do("POST", "/dev/subscriptions/"+sub+"/update", `{"plan":"Power"}`), 200)
		w.clock.Set(w.clock.Now().Add(24 * time.Hour))
		w.must(w.do("POST", "/dev/subscriptions/"+sub+"/fail", ""), 200)
		w.clock.Set(w.clock.Now().Add(24 * time.Hour))
		w.must(w.do("POST", "/dev/subscriptions/"+sub+"/cancel", `{"atPeriodEnd":true}`), 200)
		w.advance(92 * 24 * time.Hour) // the period (renewed ahead by hand, then failed) ends: deleted
	},
	// Power, then six Power→Basic→Power flips in the portal inside the first
	// period, a day apart: each downgrade's credit pays the next upgrade.
	"plan flips": flips,
	// A one-off purchase, then refunded in full.
	"top-up then refund": func(w *world, uid string) {
		w.checkout(uid, "Basic", false)
		w.clock.Set(w.clock.Now().Add(time.Hour))
		w.must(w.do("POST", "/dev/charges/"+w.last("charges")["id"].(string)+"/refund", ""), 200)
	},
	// A one-off purchase, then disputed.
	"dispute": func(w *world, uid string) {
		w.checkout(uid, "Power", false)
		w.clock.Set(w.clock.Now().Add(time.Hour))
		w.must(w.do("POST", "/dev/charges/"+w.last("charges")["id"].(string)+"/dispute", ""), 200)
	},
}

// What each lifecycle must end in, whatever the delivery order.
var finals = map[string]struct {
	plan, status string
	credits      int64
}{
	"subscription":       {"Free", "canceled", 0},      // every grant expired; the Free chain resumes on its task
	"plan flips":         {"Power", "active", 100_000}, // one Power month, however often the plan flipped
	"top-up then refund": {"Free", "", 50},
	"dispute":            {"Free", "", 50},
}

func TestWebhookLifecyclesEndTheSameInAnyOrder(t *testing.T) {
	names := make([]string, 0, len(lifecycles))
	for n := range lifecycles {
		names = append(names, n)
	}
	sort.Strings(names)
	backends(t, func(t *testing.T, newStore func() backend) {
		for _, name := range names {
			t.Run(name, func(t *testing.T) {
				rec, customer, payloads, end := record(t, lifecycles[name])
				now := end.Add(time.Minute)
				want := replay(t, rec, newStore(), customer, payloads, now)
				f := finals[name]
				if want.Plan != f.plan || want.Subscription.Status != f.status || want.Credits != f.credits {
					t.Fatalf("in order: plan %s status %q credits %d, want %s %q %d\n%+v", want.Plan, want.Subscription.Status,
						want.Credits, f.plan, f.status, f.credits, want)
				}
				var thrice [][]byte
				for _, p := range payloads {
					thrice = append(thrice, p, p, p)
				}
				if got := replay(t, rec, newStore(), customer, thrice, now); !reflect.DeepEqual(got, want) {
					t.Fatalf("each event three times:\n got %+v\nwant %+v", got, want)
				}
				shuffles := 20 // each replay is a fresh store: 30 deliveries
				if strings.Contains(t.Name(), "/firestore/") || testing.Short() {
					shuffles = 4
				}
				rng := mrand.New(mrand.NewPCG(7, uint64(len(name))))
				for i := range shuffles {
					order := append([][]byte(nil), thrice...)
					rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
					if got := replay(t, rec, newStore(), customer, order, now); !reflect.DeepEqual(got, want) {
						t.Fatalf("shuffle %d:\n got %+v\nwant %+v", i, got, want)
					}
				}
				t.Logf("%d events, in order, ×3 and %d shuffles: %s, %d credits, %d ledger entries", len(payloads), shuffles,
					want.Plan, want.Credits, len(want.Ledger))
			})
		}
	})
}

func flips(w *world, uid string) {
	w.checkout(uid, "Power", true)
	sub := w.last("subscriptions")["id"].(string)
	for range 6 {
		for _, plan := range []string{"Basic", "Power"} {
			w.clock.Set(w.clock.Now().Add(24 * time.Hour))
			w.must(w.do("POST", "/dev/subscriptions/"+sub+"/update", fmt.Sprintf(`{"plan":%q}`, plan)), 200)
		}
	}
}

// Flipping Power→Basic→Power inside one period, with the invoices Stripe's
// "always invoice" proration makes (the downgrades' credit kept as customer
// balance pays the upgrades, amount_paid 0), yields one Power month: the
// grant is keyed by (subscription, period). It minted 100,000 credits per
// flip when each paid invoice granted its plan's credits.
func TestPlanFlipsInsideAPeriodGrantOnePowerMonth(t *testing.T) {
	rec, customer, payloads, end := record(t, flips)
	var paid, zero, invoices int64
	for _, inv := range rec.devState()["invoices"] {
		invoices++
		p := int64(inv["amount_paid"].(float64))
		paid += p
		if p == 0 {
			zero++
		}
	}
	if zero == 0 {
		t.Fatalf("no invoice was paid from customer balance: the stand-in does not prorate as Stripe does")
	}
	now := end.Add(time.Minute)
	got := replay(t, rec, mock.NewStore(), customer, payloads, now)
	var granted int64
	for _, g := range got.Grants {
		var id, source string
		var remaining, amount int64
		if _, err := fmt.Sscanf(strings.ReplaceAll(g, "/", " "), "%s %s %d %d", &id, &source, &remaining, &amount); err != nil {
			t.Fatal(err)
		}
		if source == billing.SourceSubscription {
			granted += amount
		}
	}
	if granted != 100_000 || got.Credits != 100_000 {
		t.Fatalf("%d invoices (%d paid from balance), £%.2f paid: %d subscription credits granted, %d in all; want one Power month (100,000)\n%+v",
			invoices, zero, float64(paid)/100, granted, got.Credits, got)
	}
	t.Logf("%d invoices (%d paid from balance), £%.2f paid: %d credits", invoices, zero, float64(paid)/100, got.Credits)
}

func TestWebhookRefusesUntrustedDeliveriesWritingNothing(t *testing.T) {
	backends(t, func(t *testing.T, newStore func() backend) {
		_, customer, payloads, end := record(t, lifecycles["top-up then refund"])
		st := newStore()
		w := newWorld(t, st, true)
		ctx := context.Background()
		if _, _, err := st.Provision(ctx, billing.Identity{UID: "u1"}, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := st.UpdateAccount(ctx, "u1", func(a *billing.Account) error { a.CustomerID = customer; return nil }); err != nil {
			t.Fatal(err)
		}
		w.clock.Set(end)
		before := snap(t, st, "u1", end)
		p := payloads[0] // checkout.session.completed: 1,000 credits if applied
		sign := func(body []byte, secret string, at time.Time) string {
			return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: at}).Header
		}
		unknown := bytes.Replace(p, []byte(`"type": "checkout.session.completed"`), []byte(`"type": "customer.tax_id.created"`), 1)
		for _, c := range []struct {
			name, body, sig string
			status          int
		}{
			{"bad signature", string(p), "t=1700000000,v1=" + strings.Repeat("ab", 32), 400},
			{"no signature", string(p), "", 400},
			{"stale timestamp", string(p), sign(p, whsec, time.Now().Add(-6*time.Minute)), 400},
			{"wrong secret", string(p), sign(p, "whsec_other", time.Now()), 400},
			{"truncated body", string(p[:len(p)/2]), sign(p, whsec, time.Now()), 400},
			{"unknown type", string(unknown), sign(unknown, whsec, time.Now()), 200},
		} {
			res := w.do("POST", "/api/stripe/webhook", c.body, "Stripe-Signature", c.sig)
			if res.status != c.status {
				t.Errorf("%s: status %d, want %d: %s", c.name, res.status, c.status, res.raw)
			}
			if c.status == 400 && errorCode(t, res) != billing.CodeInvalidSignature {
				t.Errorf("%s: code %s", c.name, errorCode(t, res))
			}
			if got := snap(t, st, "u1", end); !reflect.DeepEqual(got, before) {
				t.Errorf("%s wrote:\n got %+v\nwant %+v", c.name, got, before)
			}
		}
		// The same event, properly signed, then applies: nothing above
		// recorded its id.
		if res := w.deliver(p, time.Now()); res.status != 200 || res.body["applied"] != true {
			t.Fatalf("genuine delivery: %d %s", res.status, res.raw)
		}
		if got := snap(t, st, "u1", end).Credits; got != before.Credits+1000 {
			t.Errorf("credits %d after the genuine delivery, want %d", got, before.Credits+1000)
		}
	})
}

// flaky fails its first fails calls of ApplyEvent, as a store does when
// Firestore is briefly unavailable.
type flaky struct {
	backend
	mu    sync.Mutex
	fails int
}

func (f *flaky) ApplyEvent(ctx context.Context, eventID, uid string, fn func(*billing.Account) error) (bool, error) {
	f.mu.Lock()
	fail := f.fails > 0
	f.fails--
	f.mu.Unlock()
	if fail {
		return false, fmt.Errorf("apply event %s: rpc error: code = Unavailable", eventID)
	}
	return f.backend.ApplyEvent(ctx, eventID, uid, fn)
}

// TestWebhookTransientFailureAnswers5xxThenApplies: Stripe retries a 5xx,
// and the retry applies the event once.
func TestWebhookTransientFailureAnswers5xxThenApplies(t *testing.T) {
	rec, customer, payloads, end := record(t, lifecycles["subscription"])
	st := &flaky{backend: mock.NewStore(), fails: 1}
	w := newWorld(t, st, true)
	w.pay.Payments = rec.dev
	ctx := context.Background()
	if _, _, err := st.Provision(ctx, billing.Identity{UID: "u1"}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateAccount(ctx, "u1", func(a *billing.Account) error { a.CustomerID = customer; return nil }); err != nil {
		t.Fatal(err)
	}
	w.clock.Set(end)
	res := w.deliver(payloads[1], time.Now()) // invoice.paid
	if res.status < 500 || strings.Contains(res.raw, "Unavailable") {
		t.Fatalf("transient store failure: %d %s (a 5xx without detail wanted)", res.status, res.raw)
	}
	if res := w.deliver(payloads[1], time.Now()); res.status != 200 || res.body["applied"] != true {
		t.Fatalf("retry: %d %s", res.status, res.raw)
	}
	if res := w.deliver(payloads[1], time.Now()); res.status != 200 || res.body["applied"] != false {
		t.Fatalf("redelivery: %d %s", res.status, res.raw)
	}

	// The end of the subscription must schedule the Free chain: a scheduler
	// failure answers 503 and the retry, though the event is recorded,
	// schedules it.
	fails := 1 // Cloud Tasks refuses once, then is back
	sched := &mock.Scheduler{ScheduleGrantFn: func(context.Context, billing.GrantTask) error {
		if fails > 0 {
			fails--
			return fmt.Errorf("cloud tasks: unavailable")
		}
		return nil
	}}
	w3 := newWorld(t, st, true, sched)
	w3.pay.Payments = rec.dev
	w3.clock.Set(end)
	last := payloads[len(payloads)-1] // customer.subscription.deleted
	if res := w3.deliver(last, time.Now()); res.status != 503 {
		t.Fatalf("scheduler down: %d %s", res.status, res.raw)
	}
	if res := w3.deliver(last, time.Now()); res.status != 200 || res.body["applied"] != false {
		t.Fatalf("retry after scheduler failure: %d %s", res.status, res.raw)
	}
	if fails != 0 || len(sched.Tasks()) < 2 {
		t.Error("scheduler not retried")
	}
}

func TestWebhookTooLargeBodyWritesNothing(t *testing.T) {
	w := newWorld(t, mock.NewStore(), true)
	big := `{"id":"evt_big","pad":"` + strings.Repeat("x", 1<<20) + `"}`
	res := w.deliver([]byte(big), time.Now())
	if res.status != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d: %s", res.status, res.raw)
	}
}

// TestBug1RenewalAndUpgradeNeverCancelTheSubscription: the original
// cancelled every subscription of the customer at the first renewal and on
// upgrades, including the one that had just renewed.
func TestBug1RenewalAndUpgradeNeverCancelTheSubscription(t *testing.T) {
	backends(t, func(t *testing.T, newStore func() backend) {
		w := newWorld(t, newStore(), true)
		w.checkout("u1", "Basic", true)
		sub := w.last("subscriptions")["id"].(string)
		w.advance(31 * 24 * time.Hour)                                    // renews
		w.must(w.do("POST", "/dev/subscriptions/"+sub+"/renew", ""), 200) // and again
		// An upgrade by checkout is refused (it would make a second
		// subscription); the portal changes the plan in place.
		if res := w.as("u1", "POST", "/api/checkout", `{"plan":"Power","subscribe":true}`); res.status != 409 {
			t.Fatalf("second subscription checkout: %d %s", res.status, res.raw)
		}
		w.must(w.do("POST", "/dev/subscriptions/"+sub+"/update", `{"plan":"Power"}`), 200)
		if err := w.dev.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if w.pay.cancels != 0 {
			t.Errorf("the server asked Stripe to cancel subscriptions %d times", w.pay.cancels)
		}
		subs := w.devState()["subscriptions"]
		if len(subs) != 1 || subs[0]["status"] != "active" {
			t.Fatalf("stand-in subscriptions: %v", subs)
		}
		u := w.user("u1")
		s, _ := u["subscription"].(map[string]any)
		if u["plan"] != "Power" || s["status"] != "active" || u["credits"].(float64) < 100_000 {
			t.Errorf("after renewals and an upgrade: %v", u)
		}
	})
}

// TestBug3RepeatedCancelGrantsNothing: the original granted 50 credits and
// started another Free loop on every call to cancel.
func TestBug3RepeatedCancelGrantsNothing(t *testing.T) {
	backends(t, func(t *testing.T, newStore func() backend) {
		w := newWorld(t, newStore(), true)
		w.checkout("u1", "Basic", true)
		w.clock.Set(w.clock.Now().Add(3 * 24 * time.Hour))
		credits := w.user("u1")["credits"].(float64)
		w.sched.Reset()
		for i := range 5 {
			u := w.must(w.as("u1", "POST", "/api/cancel", ""), 200).body["user"].(map[string]any)
			if err := w.dev.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			if u["plan"] != "Free" || u["credits"].(float64) != credits {
				t.Fatalf("cancel %d: plan %v credits %v, want Free and %v (nothing granted)", i, u["plan"], u["credits"], credits)
			}
		}
		if got := w.user("u1")["credits"].(float64); got != credits {
			t.Errorf("credits %v after cancels and Stripe's deletion event, want %v", got, credits)
		}
		chains := map[billing.GrantTask]bool{}
		for _, tk := range w.sched.Tasks() {
			tk.At = tk.At.UTC()
			chains[tk] = true
		}
		if len(chains) != 1 {
			t.Errorf("scheduled %d distinct Free grant tasks, want one chain: %v", len(chains), w.sched.Tasks())
		}
		for tk := range chains {
			if !tk.At.After(w.clock.Now()) {
				t.Errorf("next Free grant at %v is not after the cancel", tk.At)
			}
		}
		if subs := w.devState()["subscriptions"]; subs[0]["status"] != "canceled" {
			t.Errorf("Stripe subscription still %v", subs[0]["status"])
		}
	})
}

// TestBug4DuplicateDeliveriesGrantOnce: the original granted credits again
// on each delivery of the same event.
func TestBug4DuplicateDeliveriesGrantOnce(t *testing.T) {
	backends(t, func(t *testing.T, newStore func() backend) {
		w := newWorld(t, newStore(), true)
		w.checkout("u1", "Basic", true)
		before := w.user("u1")["credits"].(float64)
		ids := w.dev.EventIDs()
		paid, _ := w.dev.Payload(ids[len(ids)-1]) // invoice.paid, applied once already
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.deliver(paid, time.Now())
			}()
		}
		wg.Wait()
		for range 3 {
			w.must(w.do("POST", "/dev/events/"+ids[len(ids)-1]+"/resend", ""), 200)
		}
		if got := w.user("u1")["credits"].(float64); got != before {
			t.Errorf("credits %v after redeliveries, want %v", got, before)
		}
		if before != 1050 {
			t.Errorf("credits %v after subscribing, want 1050 (Free 50 + Basic 1000)", before)
		}
	})
}

// TestBug5FailuresCancellationsRefundsAndDisputesApply: the original ignored
// failed payments, cancellations from the portal or dashboard, refunds and
// disputes.
func TestBug5FailuresCancellationsRefundsAndDisputesApply(t *testing.T) {
	backends(t, func(t *testing.T, newStore func() backend) {
		w := newWorld(t, newStore(), true)
		w.checkout("u1", "Basic", true)
		sub := w.last("subscriptions")["id"].(string)
		firstCharge := w.last("charges")["id"].(string)

		w.clock.Set(w.clock.Now().Add(24 * time.Hour))
		w.must(w.do("POST", "/dev/subscriptions/"+sub+"/fail", ""), 200)
		u := w.user("u1")
		if s := u["subscription"].(map[string]any); s["status"] != "past_due" || u["credits"].(float64) != 1050 {
			t.Errorf("failed payment: %v", u)
		}

		w.must(w.do("POST", "/dev/subscriptions/"+sub+"/cancel", `{"atPeriodEnd":true}`), 200)
		if s := w.user("u1")["subscription"].(map[string]any); s["cancelAtPeriodEnd"] != true {
			t.Errorf("portal cancel at period end not shown: %v", s)
		}
		w.must(w.do("POST", "/dev/subscriptions/"+sub+"/cancel", `{"atPeriodEnd":false}`), 200)
		// An ended subscription reads as none.
		if u := w.user("u1"); u["plan"] != "Free" || u["subscription"] != nil || u["nextGrantAt"] == nil {
			t.Errorf("dashboard cancel: %v", u)
		}

		w.must(w.do("POST", "/dev/charges/"+firstCharge+"/refund", `{"amount":250}`), 200)
		if got := w.user("u1")["credits"].(float64); got != 550 {
			t.Errorf("half refund: credits %v, want 550 (half the 1,000 taken back)", got)
		}
		w.checkout("u1", "Power", false)
		w.must(w.do("POST", "/dev/charges/"+w.last("charges")["id"].(string)+"/dispute", ""), 200)
		if got := w.user("u1")["credits"].(float64); got != 550 {
			t.Errorf("dispute: credits %v, want 550 (the disputed top-up taken back)", got)
		}
	})
}

func TestCheckout(t *testing.T) {
	w := newWorld(t, mock.NewStore(), true)
	for _, c := range []struct{ body, code string }{
		{`{"plan":"Free","subscribe":true}`, billing.CodeInvalidPlan},
		{`{"plan":"Free"}`, billing.CodeInvalidPlan},
		{`{"plan":"Gold","subscribe":false}`, billing.CodeInvalidPlan},
		{`{"plan":""}`, billing.CodeInvalidPlan},
		{`{"plan":"Basic","extra":1}`, billing.CodeBadRequest},
		{``, billing.CodeBadRequest},
	} {
		res := w.as("u1", "POST", "/api/checkout", c.body)
		if res.status != 400 || errorCode(t, res) != c.code {
			t.Errorf("%s: %d %s, want 400 %s", c.body, res.status, res.raw, c.code)
		}
	}
	if res := w.do("POST", "/api/checkout", `{"plan":"Basic"}`); res.status != 401 {
		t.Errorf("signed out: %d", res.status)
	}
	if res := w.as("u1", "GET", "/api/checkout", ""); res.status != 405 {
		t.Errorf("GET: %d", res.status)
	}
	w.checkout("u1", "Basic", false)
	w.checkout("u1", "Basic", true)
	res := w.as("u1", "POST", "/api/checkout", `{"plan":"Basic","subscribe":true}`)
	if res.status != 409 || errorCode(t, res) != billing.CodeAlreadySubscribed {
		t.Errorf("same plan again: %d %s", res.status, res.raw)
	}
	w.checkout("u1", "Power", false) // a one-off purchase is always allowed
	if w.pay.customers != 1 {
		t.Errorf("Stripe customer created %d times, want once", w.pay.customers)
	}
	if n := len(w.devState()["customers"]); n != 1 {
		t.Errorf("%d customers in the stand-in", n)
	}
	sessions := w.devState()["sessions"]
	for _, s := range sessions {
		md := s["metadata"].(map[string]any)
		if md["uid"] != "u1" || md["plan"] == "" || s["success_url"] != "http://paymeter.test/checkout/success" ||
			s["cancel_url"] != "http://paymeter.test/checkout/cancel" {
			t.Errorf("session %v", s)
		}
	}
	if u := w.user("u1"); u["credits"].(float64) != 50+1000+1000+100_000 {
		t.Errorf("credits %v", u["credits"])
	}
}

func TestPortal(t *testing.T) {
	w := newWorld(t, mock.NewStore(), true)
	res := w.must(w.as("u1", "POST", "/api/portal", ""), 200)
	url, _ := res.body["url"].(string)
	if !strings.HasPrefix(url, "http://paymeter.test/dev/portal/cus_") {
		t.Fatalf("portal url %q", url)
	}
	w.checkout("u1", "Basic", true)
	page := w.must(w.do("GET", strings.TrimPrefix(url, "http://paymeter.test"), ""), 200).raw
	for _, want := range []string{`id="change-Power"`, `id="cancel-at-period-end"`, `id="cancel-now"`, "Basic subscription"} {
		if !strings.Contains(page, want) {
			t.Errorf("portal page lacks %s", want)
		}
	}
}

// BenchmarkWebhookRedelivery measures one verified delivery of an event
// that was applied already: signature check, decode, the account lookup by
// customer and the transaction that finds the event id recorded.
func BenchmarkWebhookRedelivery(b *testing.B) {
	for _, kind := range []string{"memory", "firestore"} {
		b.Run(kind, func(b *testing.B) {
			var st backend = mock.NewStore()
			if kind == "firestore" {
				emulator.Firestore(b)
				client, err := firestore.NewClient(context.Background(), fmt.Sprintf("demo-bench-%d", time.Now().UnixNano()))
				if err != nil {
					b.Fatal(err)
				}
				defer client.Close()
				st = store.New(client, billing.DefaultCatalog().Free())
			}
			w := newWorld(b, st, true)
			ctx := context.Background()
			cus, _ := w.dev.EnsureCustomer(ctx, "u1", "")
			if _, _, err := st.Provision(ctx, billing.Identity{UID: "u1"}, t0); err != nil {
				b.Fatal(err)
			}
			if _, err := st.UpdateAccount(ctx, "u1", func(a *billing.Account) error { a.CustomerID = cus; return nil }); err != nil {
				b.Fatal(err)
			}
			co, _ := w.dev.CheckoutSession(ctx, billing.CheckoutRequest{UID: "u1", CustomerID: cus, Plan: "Basic", Kind: billing.PriceMonthly})
			req := httptest.NewRequest("POST", "/dev/checkout/"+co.SessionID+"/complete", nil)
			w.mux.ServeHTTP(httptest.NewRecorder(), req)
			ids := w.dev.EventIDs()
			paid, _ := w.dev.Payload(ids[len(ids)-1])
			sig := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: paid, Secret: whsec, Timestamp: time.Now()}).Header
			b.ResetTimer()
			for range b.N {
				req := httptest.NewRequest("POST", "/api/stripe/webhook", bytes.NewReader(paid))
				req.Header.Set("Stripe-Signature", sig)
				rec := httptest.NewRecorder()
				w.mux.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
