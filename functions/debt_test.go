package functions_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/devstripe"
	"github.com/paymeter/paymeter/functions"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/emulator"
	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/lease"
	"github.com/paymeter/paymeter/payments"
	"github.com/paymeter/paymeter/store"
	"github.com/paymeter/paymeter/tasks"
)

// swappableMeter is a Meter whose implementation a test replaces, as a
// new function instance replaces one that shut down.
type swappableMeter struct {
	mu sync.Mutex
	m  billing.Meter
}

func (s *swappableMeter) swap(m billing.Meter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = m
}

func (s *swappableMeter) DebitKey(ctx context.Context, hash string, cost int64, now time.Time) (int64, error) {
	s.mu.Lock()
	m := s.m
	s.mu.Unlock()
	return m.DebitKey(ctx, hash, cost, now)
}

// meteredWorld is a world whose server also meters (/api/batch costs 20)
// with meter, and serves the Free grant task at /api/tasks/grant.
func meteredWorld(t *testing.T, st *store.Store, meter billing.Meter) *world {
	t.Helper()
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"PUBLIC_URL": "http://paymeter.test", "METER_COSTS": "/api/meter=1,/api/batch=20"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, st: st, clock: clock.NewFixed(t0), sched: &mock.Scheduler{}, mux: http.NewServeMux(), logs: &bytes.Buffer{}}
	w.dev = devstripe.New(devstripe.Config{PublicURL: "http://paymeter.test", WebhookSecret: whsec, Webhook: w.mux,
		Catalog: billing.DefaultCatalog(), Clock: w.clock})
	t.Cleanup(w.dev.Close)
	w.pay = &countingPayments{Payments: w.dev}
	srv := &functions.Server{Config: cfg, Catalog: billing.DefaultCatalog(), Accounts: st, History: st, Keys: st, Meter: meter,
		Events: st, Scheduler: w.sched, Payments: w.pay, Webhooks: payments.NewWebhook(whsec), Auth: tokens{}, Clock: w.clock,
		Random: rand.Reader, Log: slog.New(slog.NewTextHandler(w.logs, nil))}
	srv.Mount(w.mux, srv.Functions())
	w.mux.Handle("POST /api/tasks/grant", tasks.NewGrantHandler(st, w.sched, w.clock, billing.DefaultCatalog().Free(), nil))
	w.mux.Handle("/dev/", w.dev.Routes())
	return w
}

// TestRefundOfSpentCreditsLeavesDebtThroughHTTP is the case as a
// user meets it, in both metering modes: buy Basic once (1,050 credits with
// the Free 50), spend 1,040 through the metered API, the purchase is
// refunded: GET /api/user shows debt 990 and credits 0, the ledger shows
// the debt, metered calls answer 402 insufficient_credits; the next Free
// grant pays 50 of it (debt 940) and calls are still refused.
func TestRefundOfSpentCreditsLeavesDebtThroughHTTP(t *testing.T) {
	emulator.Firestore(t)
	for _, mode := range []string{"txn", "lease"} {
		t.Run(mode, func(t *testing.T) {
			client, err := firestore.NewClient(context.Background(), fmt.Sprintf("demo-debt-%d", time.Now().UnixNano()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { client.Close() })
			st := store.New(client, billing.DefaultCatalog().Free())
			meter := &swappableMeter{m: st}
			var leases *lease.Manager
			if mode == "lease" {
				leases = lease.New(st, clock.NewFixed(t0), lease.Config{}, nil)
				meter.swap(leases)
			}
			w := meteredWorld(t, st, meter)

			w.checkout("u1", "Basic", false)
			if got := w.user("u1")["credits"].(float64); got != 1050 {
				t.Fatalf("after buying Basic once: %v credits, want 1,050", got)
			}
			res := w.must(w.as("u1", "POST", "/api/keys", `{"name":"ci"}`), http.StatusCreated)
			key := res.body["key"].(string)
			call := func() response {
				return w.do("POST", "/api/batch", "", "Authorization", "Bearer "+key)
			}
			// 52 calls of 20, from one caller: this is about the money, not
			// concurrency (store and lease tests cover that).
			for range 52 {
				if res := call(); res.status != 200 {
					t.Fatalf("spending: %d %s", res.status, res.raw)
				}
			}
			if leases != nil {
				// The instance gives its leases back (idle, or shutting down):
				// what they spent is settled on the account.
				if err := leases.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
				leases = lease.New(st, w.clock, lease.Config{}, nil) // a new instance
				t.Cleanup(func() { _ = leases.Close(context.Background()) })
				meter.swap(leases)
			}
			if got := w.user("u1")["credits"].(float64); got != 10 {
				t.Fatalf("after spending 1,040: %v credits, want 10", got)
			}

			w.clock.Set(t0.Add(time.Hour))
			w.must(w.do("POST", "/dev/charges/"+w.last("charges")["id"].(string)+"/refund", ""), 200)
			u := w.user("u1")
			if u["debt"] != float64(990) || u["credits"] != float64(0) {
				t.Fatalf("after the refund: debt %v, credits %v; want 990 and 0", u["debt"], u["credits"])
			}
			refused := func(when string) {
				t.Helper()
				for _, path := range []string{"/api/meter", "/api/batch"} {
					res := w.do("POST", path, "", "Authorization", "Bearer "+key)
					if res.status != http.StatusPaymentRequired || errorCode(t, res) != billing.CodeInsufficientCredits {
						t.Errorf("%s, %s answered %d %s; want 402 insufficient_credits", when, path, res.status, res.raw)
					}
				}
			}
			refused("in debt")
			entries := w.must(w.as("u1", "GET", "/api/ledger?limit=50", ""), 200).body["entries"].([]any)
			found := false
			for _, e := range entries {
				e := e.(map[string]any)
				if e["kind"] == billing.EntryDebt && e["credits"] == float64(-990) && e["note"] != "" {
					found = true
				}
			}
			if !found {
				t.Errorf("no debt of 990 in the ledger: %v", entries)
			}

			w.clock.Set(t0.Add(billing.Week))
			w.must(w.do("POST", "/api/tasks/grant", `{"uid":"u1","period":1}`), 200)
			u = w.user("u1")
			if u["debt"] != float64(940) || u["credits"] != float64(0) {
				t.Fatalf("after the next Free grant: debt %v, credits %v; want 940 and 0", u["debt"], u["credits"])
			}
			refused("still in debt")
		})
	}
}

// TestDelayedPaymentGrantsWhenItSucceedsThroughHTTP: a one-off purchase by
// bank debit shows no credits while it settles, 1,000 more once it
// succeeds (however often and in whatever order the events arrive), and
// none with a note in the ledger if it fails.
func TestDelayedPaymentGrantsWhenItSucceedsThroughHTTP(t *testing.T) {
	backends(t, func(t *testing.T, newStore func() backend) {
		w := newWorld(t, newStore(), true)
		open := func() string {
			res := w.must(w.as("u1", "POST", "/api/checkout", `{"plan":"Basic","subscribe":false}`), 200)
			id := res.body["sessionId"].(string)
			w.must(w.do("POST", "/dev/checkout/"+id+"/complete", `{"payment":"delayed"}`), 200)
			return id
		}
		ok := open()
		if got := w.user("u1")["credits"].(float64); got != 50 {
			t.Fatalf("while the debit settles: %v credits, want only the Free 50", got)
		}
		w.clock.Set(w.clock.Now().Add(48 * time.Hour))
		w.must(w.do("POST", "/dev/checkout/"+ok+"/succeed", ""), 200)
		if got := w.user("u1")["credits"].(float64); got != 1050 {
			t.Fatalf("after the debit succeeded: %v credits, want 1,050", got)
		}
		// Every event again, newest first: nothing more is granted.
		ids := w.dev.EventIDs()
		for i := len(ids) - 1; i >= 0; i-- {
			w.must(w.do("POST", "/dev/events/"+ids[i]+"/resend", ""), 200)
		}
		if got := w.user("u1")["credits"].(float64); got != 1050 {
			t.Errorf("after redeliveries: %v credits, want 1,050", got)
		}

		bad := open()
		w.must(w.do("POST", "/dev/checkout/"+bad+"/fail", ""), 200)
		if got := w.user("u1")["credits"].(float64); got != 1050 {
			t.Errorf("after a failed debit: %v credits, want still 1,050", got)
		}
		found := false
		for _, e := range w.must(w.as("u1", "GET", "/api/ledger?limit=50", ""), 200).body["entries"].([]any) {
			e := e.(map[string]any)
			found = found || (e["kind"] == billing.EntryNote && e["credits"] == float64(0) && e["note"] != "")
		}
		if !found {
			t.Errorf("no ledger note of the failed payment")
		}
	})
}
