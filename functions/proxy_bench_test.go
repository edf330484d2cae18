package functions_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/functions"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/emulator"
	"github.com/paymeter/paymeter/lease"
	"github.com/paymeter/paymeter/store"
)

// TestProxyOverhead measures the upstream proxy in lease mode against
// calling the upstream directly, in one run: median and p99 latency per
// call and calls/s, with 50 clients, for an upstream that answers at once
// and for one that takes 20 ms (a realistic service, behind which the
// record of a call's use can overlap the upstream's work). It runs with
// PAYMETER_BENCH=1:
//
//	PAYMETER_BENCH=1 go test -count=1 -run TestProxyOverhead -v ./functions
func TestProxyOverhead(t *testing.T) {
	if os.Getenv("PAYMETER_BENCH") == "" {
		t.Skip("set PAYMETER_BENCH=1 to measure the proxy")
	}
	emulator.Firestore(t)
	for _, work := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("upstream %v", work), func(t *testing.T) { proxyOverhead(t, work) })
	}
}

// proxyOverhead measures the proxy in front of an upstream that takes work
// to answer.
func proxyOverhead(t *testing.T, work time.Duration) {
	ctx := context.Background()
	client, err := firestore.NewClient(ctx, fmt.Sprintf("demo-bench-%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(work)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"words":3}`))
	}))
	defer upstream.Close()
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"METER_UPSTREAMS": "/v1/=" + upstream.URL, "METER_MODE": "lease", "LEASE_MAX_BLOCK": "100000"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	cat := billing.DefaultCatalog()
	st := store.New(client, cat.Free())
	clock := clock.NewFixed(time.Now())
	now := clock.Now()
	if _, _, err := st.Provision(ctx, billing.Identity{UID: "bench"}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateAccount(ctx, "bench", func(a *billing.Account) error {
		a.Credit("bench", billing.SourceAdjustment, 10_000_000, now, "bench")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	secret, key, hash, err := billing.NewAPIKey(rand.Reader, "bench", "bench", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateKey(ctx, hash, key); err != nil {
		t.Fatal(err)
	}
	leases := lease.New(st, realNow{}, lease.Config{MaxBlock: 100000}, nil)
	defer leases.Close(ctx)
	srv := &functions.Server{Config: cfg, Catalog: cat, Accounts: st, History: st, Keys: st, Meter: leases, Events: st,
		Clock: realNow{}, Random: rand.Reader, Metering: st, Leases: leases, Log: slog.New(slog.DiscardHandler)}
	mux := http.NewServeMux()
	srv.Mount(mux, srv.Functions("Meter"))
	proxy := httptest.NewServer(mux)
	defer proxy.Close()

	tr := &http.Transport{MaxIdleConnsPerHost: 100}
	hc := &http.Client{Transport: tr}
	run := func(url string, auth bool, n int) (p50, p99 time.Duration, rate float64) {
		const clients = 50
		lat := make([]time.Duration, n)
		var wg sync.WaitGroup
		start := time.Now()
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := c; i < n; i += clients {
					req, _ := http.NewRequest("GET", url, nil)
					if auth {
						req.Header.Set("Authorization", "Bearer "+secret)
					}
					t0 := time.Now()
					res, err := hc.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					lat[i] = time.Since(t0)
					if res.StatusCode != 200 {
						t.Errorf("status %d", res.StatusCode)
						return
					}
				}
			}()
		}
		wg.Wait()
		rate = float64(n) / time.Since(start).Seconds()
		slices.Sort(lat)
		return lat[n/2], lat[n*99/100], rate
	}
	run(proxy.URL+"/v1/stats", true, 2000) // warm: leases, connections
	run(upstream.URL+"/stats", false, 2000)
	n := 20000
	if work > 0 {
		n = 5000 // 50 clients at 20 ms a call: 2 s a run
	}
	d50, d99, drate := run(upstream.URL+"/stats", false, n)
	p50, p99, prate := run(proxy.URL+"/v1/stats", true, n)
	t.Logf("50 clients, %d calls each way, lease mode, Firestore emulator, upstream work %v", n, work)
	t.Logf("direct:  median %v  p99 %v  %.0f calls/s", d50, d99, drate)
	t.Logf("proxied: median %v  p99 %v  %.0f calls/s", p50, p99, prate)
	t.Logf("added:   median %v  p99 %v  (ratio median %.2fx, throughput %.2fx)", p50-d50, p99-d99,
		float64(p50)/float64(d50), prate/drate)

	// The proxy alone: a meter that answers at once, so the difference is
	// httputil.ReverseProxy, the middleware and the receipts.
	srv.Leases = freeCharger{}
	mux2 := http.NewServeMux()
	srv.Mount(mux2, srv.Functions("Meter"))
	bare := httptest.NewServer(mux2)
	defer bare.Close()
	run(bare.URL+"/v1/stats", true, 2000)
	b50, b99, brate := run(bare.URL+"/v1/stats", true, n)
	t.Logf("proxy alone (no-op meter): median %v  p99 %v  %.0f calls/s; added median %v  p99 %v", b50, b99, brate, b50-d50, b99-d99)
}

type freeCharger struct{}

func (freeCharger) Charge(_ context.Context, _ string, cost int64, route string, now time.Time) (billing.Debited, error) {
	return billing.Debited{UID: "bench", KeyID: "key_bench", Route: route, Cost: cost, Remaining: 1, At: now}, nil
}

type realNow struct{}

func (realNow) Now() time.Time { return time.Now() }
