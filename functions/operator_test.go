package functions_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/functions"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/emulator"
	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/store"
)

const operatorSecret = "op-secret-0123456789abcdef"

// operatorHarness serves every function with the operator secret set, on a
// clock that starts now (the store settles expired leases by the wall clock).
func operatorHarness(t *testing.T) (*harness, *clock.Fixed) {
	t.Helper()
	emulator.Firestore(t)
	client, err := firestore.NewClient(context.Background(), fmt.Sprintf("demo-op-%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"PAYMETER_OPERATOR_SECRET": operatorSecret, "METER_COSTS": "/api/meter=1,/v1/search=3"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	cat := billing.DefaultCatalog()
	st := store.New(client, cat.Free())
	clock := clock.NewFixed(time.Now())
	h := &harness{t: t, mux: http.NewServeMux(), store: st, sched: &mock.Scheduler{}, logs: &bytes.Buffer{}}
	srv := &functions.Server{Config: cfg, Catalog: cat, Accounts: st, History: st, Keys: st, Meter: st, Events: st,
		Scheduler: h.sched, Auth: tokens{}, Clock: clock, Random: rand.Reader, Metering: st,
		Log: slog.New(slog.NewTextHandler(h.logs, nil))}
	srv.Mount(h.mux, srv.Functions())
	return h, clock
}

func (h *harness) op(method, path, body string, header ...string) response {
	h.t.Helper()
	return h.do(method, path, body, append([]string{"Authorization", "Bearer " + operatorSecret}, header...)...)
}

func TestVerifyDebitsAndAnswers(t *testing.T) {
	h, _ := operatorHarness(t)
	key := h.newKey("ver")
	res := h.op("POST", "/api/verify", `{"key":"`+key+`","route":"/v1/search"}`)
	if res.status != 200 || res.body["allowed"] != true || res.body["cost"] != float64(3) || res.body["credits"] != float64(47) ||
		res.body["account"] != "ver" || !strings.HasPrefix(res.body["keyId"].(string), "key_") {
		t.Fatalf("verify = %d %s", res.status, res.raw)
	}
	if res.header.Get("X-Credits-Cost") != "3" || res.header.Get("X-Request-Id") == "" {
		t.Errorf("receipt headers: %v", res.header)
	}
	res = h.op("POST", "/api/verify", `{"key":"`+key+`","cost":48}`)
	if res.status != 402 || errorCode(t, res) != "insufficient_credits" {
		t.Errorf("verify past the balance = %d %s", res.status, res.raw)
	}
	// Idempotent: the same key replays, once debited.
	for i := range 3 {
		res = h.op("POST", "/api/verify", `{"key":"`+key+`","cost":2}`, "Idempotency-Key", "v-1")
		if res.status != 200 || res.body["credits"] != float64(45) || (i > 0) != (res.header.Get("Idempotent-Replayed") == "true") {
			t.Fatalf("idempotent verify %d = %d %s %v", i, res.status, res.raw, res.header)
		}
	}
	if got := h.credits("ver"); got != 45 {
		t.Errorf("credits = %v, want 45", got)
	}
	days := h.as("ver", "GET", "/api/usage?days=1", "").body["days"].([]any)
	routes := days[0].(map[string]any)["routes"].(map[string]any)
	if routes["/v1/search"] != float64(3) || routes["/api/verify"] != float64(2) {
		t.Errorf("usage routes = %v", routes)
	}
}

func TestReservationsHoldSettleReleaseExpire(t *testing.T) {
	h, clock := operatorHarness(t)
	key := h.newKey("res")
	reserve := func(credits, ttl int) response {
		return h.op("POST", "/api/reservations", fmt.Sprintf(`{"key":%q,"credits":%d,"ttlSeconds":%d}`, key, credits, ttl))
	}
	r1 := reserve(30, 60)
	if r1.status != 201 || r1.body["credits"] != float64(30) || r1.body["account"] != "res" || r1.body["expiresAt"] == nil {
		t.Fatalf("reserve = %d %s", r1.status, r1.raw)
	}
	if got := h.credits("res"); got != 20 {
		t.Errorf("credits while 30 are held = %v, want 20", got)
	}
	if res := reserve(21, 60); res.status != 402 || errorCode(t, res) != "insufficient_credits" {
		t.Errorf("reserving more than is free = %d %s", res.status, res.raw)
	}
	id := r1.body["id"].(string)
	for range 2 {
		res := h.op("POST", "/api/reservations/"+id+"/settle", `{"credits":12}`)
		if res.status != 200 || res.body["charged"] != float64(12) || res.body["released"] != float64(18) || res.body["credits"] != float64(38) {
			t.Fatalf("settle = %d %s", res.status, res.raw)
		}
	}
	if res := h.op("POST", "/api/reservations/"+id+"/settle", `{"credits":5}`); res.status != 409 {
		t.Errorf("a different settle after settling = %d %s", res.status, res.raw)
	}
	r2 := reserve(10, 60)
	res := h.op("DELETE", "/api/reservations/"+r2.body["id"].(string), "")
	if res.status != 200 || res.body["charged"] != float64(0) || res.body["released"] != float64(10) || res.body["credits"] != float64(38) {
		t.Fatalf("release = %d %s", res.status, res.raw)
	}
	r3 := reserve(8, 1)
	clock.Add(2 * time.Second)
	res = h.op("POST", "/api/reservations/"+r3.body["id"].(string)+"/settle", `{"credits":8}`)
	if res.status != 409 || errorCode(t, res) != "reservation_expired" {
		t.Fatalf("settle after expiry = %d %s", res.status, res.raw)
	}
	if got := h.credits("res"); got != 38 {
		t.Errorf("credits after the expiry = %v, want 38: the expiry gives everything back", got)
	}
	// Idempotent reserve: one hold.
	for range 2 {
		res = h.op("POST", "/api/reservations", fmt.Sprintf(`{"key":%q,"credits":5}`, key), "Idempotency-Key", "r-1")
		if res.status != 201 {
			t.Fatalf("idempotent reserve = %d %s", res.status, res.raw)
		}
	}
	if got := h.credits("res"); got != 33 {
		t.Errorf("credits after an idempotent reserve twice = %v, want 33", got)
	}
}

// Verifies racing against a held balance spend only what is free.
func TestConcurrentVerifiesNeverSpendHeldCredits(t *testing.T) {
	h, _ := operatorHarness(t)
	key := h.newKey("held")
	if res := h.op("POST", "/api/reservations", `{"key":"`+key+`","credits":40,"ttlSeconds":600}`); res.status != 201 {
		t.Fatalf("reserve = %d %s", res.status, res.raw)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := h.op("POST", "/api/verify", `{"key":"`+key+`"}`)
			if res.status == 200 {
				mu.Lock()
				ok++
				mu.Unlock()
			} else if res.status != 402 && res.status != 503 {
				t.Errorf("verify = %d %s", res.status, res.raw)
			}
		}()
	}
	wg.Wait()
	if ok > 10 {
		t.Fatalf("%d verifies were allowed with 10 credits free", ok)
	}
	if got := h.credits("held"); got != float64(10-ok) {
		t.Errorf("credits = %v after %d verifies, want %d", got, ok, 10-ok)
	}
}

// Bad input to every new route answers in the contract's error shape and
// changes nothing.
func TestOperatorRoutesRefuseBadInput(t *testing.T) {
	h, _ := operatorHarness(t)
	key := h.newKey("bad")
	for _, tc := range []struct {
		method, path, body string
		header             []string
		status             int
		code               string
	}{
		{"POST", "/api/verify", `{"key":"` + key + `"}`, []string{"Authorization", "Bearer wrong"}, 401, "unauthenticated"},
		{"POST", "/api/verify", `{"key":"` + key + `"}`, []string{"Authorization", ""}, 401, "unauthenticated"},
		{"POST", "/api/verify", `{"key":"pmk_nope"}`, nil, 401, "invalid_api_key"},
		{"POST", "/api/verify", `{"key":"` + key + `","cost":0}`, nil, 400, "bad_request"},
		{"POST", "/api/verify", `{"key":"` + key + `","cost":1000001}`, nil, 400, "bad_request"},
		{"POST", "/api/verify", `{"key":"` + key + `","route":"no-slash"}`, nil, 400, "bad_request"},
		{"POST", "/api/verify", `{"key":"` + key + `","extra":1}`, nil, 400, "bad_request"},
		{"POST", "/api/verify", `not json`, nil, 400, "bad_request"},
		{"POST", "/api/verify", `{"key":"` + key + `"}`, []string{"Idempotency-Key", strings.Repeat("k", 256)}, 400, "bad_request"},
		{"POST", "/api/verify", `{"key":"` + key + `"}`, []string{"Idempotency-Key", "tab\there"}, 400, "bad_request"},
		{"GET", "/api/verify", ``, nil, 405, "method_not_allowed"},
		{"POST", "/api/reservations", `{"key":"` + key + `","credits":0}`, nil, 400, "bad_request"},
		{"POST", "/api/reservations", `{"key":"` + key + `","credits":5,"ttlSeconds":3601}`, nil, 400, "bad_request"},
		{"POST", "/api/reservations", `{"key":"` + key + `","credits":5,"ttlSeconds":0}`, nil, 400, "bad_request"},
		{"POST", "/api/reservations", `{"key":"` + key + `","credits":51}`, nil, 402, "insufficient_credits"},
		{"POST", "/api/reservations/res_unknown/settle", `{"credits":1}`, nil, 404, "not_found"},
		{"POST", "/api/reservations/res_unknown/settle", `{}`, nil, 400, "bad_request"},
		{"POST", "/api/reservations/res_unknown/settle", `{"credits":-1}`, nil, 400, "bad_request"},
		{"DELETE", "/api/reservations/other", ``, nil, 404, "not_found"},
		{"POST", "/api/meter", ``, []string{"Authorization", "Bearer " + key, "Idempotency-Key", ""}, 400, "bad_request"},
	} {
		res := h.op(tc.method, tc.path, tc.body, tc.header...)
		if res.status != tc.status || errorCode(t, res) != tc.code {
			t.Errorf("%s %s %s %v = %d %s, want %d %s", tc.method, tc.path, tc.body, tc.header, res.status, res.raw, tc.status, tc.code)
		}
		if msg, _ := res.body["error"].(map[string]any)["message"].(string); msg == "" {
			t.Errorf("%s %s: no error message", tc.method, tc.path)
		}
	}
	if got := h.credits("bad"); got != 50 {
		t.Errorf("credits = %v after refused calls, want 50", got)
	}
}
