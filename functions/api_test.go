package functions_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/functions"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/emulator"
	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/lease"
	"github.com/paymeter/paymeter/store"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// tokens is a TokenVerifier double: "token-<uid>" is uid's ID token, and
// "verified-<uid>" one whose email is verified (a Google sign-in). The
// Firebase verifier itself is tested against the Auth emulator.
type tokens struct{}

func (tokens) Verify(_ context.Context, tok string) (billing.Identity, error) {
	if uid, ok := strings.CutPrefix(tok, "verified-"); ok && uid != "" {
		return billing.Identity{UID: uid, Email: uid + "@example.com", EmailVerified: true}, nil
	}
	uid, ok := strings.CutPrefix(tok, "token-")
	if !ok || uid == "" {
		return billing.Identity{}, billing.ErrUnauthenticated
	}
	return billing.Identity{UID: uid, Email: uid + "@example.com"}, nil
}

type harness struct {
	t     *testing.T
	mux   *http.ServeMux
	store *store.Store
	sched *mock.Scheduler
	logs  *bytes.Buffer
	clock *clock.Fixed
	// instance serves the same store as another function instance would,
	// with the rate limiter lim.
	instance func(lim functions.RateLimiter) *http.ServeMux
}

func newHarness(t *testing.T, env map[string]string) *harness {
	t.Helper()
	return newHarnessAuth(t, env, tokens{})
}

// newHarnessAuth is newHarness with auth verifying tokens, and the store
// opening accounts as REQUIRE_VERIFIED_EMAIL in env asks, as wiring.go wires it.
func newHarnessAuth(t *testing.T, env map[string]string, auth billing.TokenVerifier) *harness {
	t.Helper()
	emulator.Firestore(t)
	client, err := firestore.NewClient(context.Background(), fmt.Sprintf("demo-api-%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cat := billing.DefaultCatalog()
	st := store.New(client, cat.Free())
	st.RequireVerifiedEmail(cfg.RequireVerifiedEmail)
	h := &harness{t: t, mux: http.NewServeMux(), store: st, sched: &mock.Scheduler{}, logs: &bytes.Buffer{}, clock: clock.NewFixed(t0)}
	log := slog.New(slog.NewTextHandler(h.logs, nil))
	h.instance = func(lim functions.RateLimiter) *http.ServeMux {
		srv := &functions.Server{Config: cfg, Catalog: cat, Accounts: st, History: st, Keys: st, Meter: st, Events: st,
			Scheduler: h.sched, Auth: auth, Clock: h.clock, Random: rand.Reader, Metering: st, Limiter: lim, Log: log}
		if cfg.MeterMode == "lease" {
			m := lease.New(st, h.clock, lease.Config{KeyTTL: cfg.KeyCacheTTL}, nil)
			t.Cleanup(func() { _ = m.Close(context.Background()) })
			srv.Meter, srv.Leases = m, m
		}
		mux := http.NewServeMux()
		srv.Mount(mux, srv.Functions())
		return mux
	}
	h.mux = h.instance(nil)
	return h
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (h *harness) do(method, path, body string, header ...string) response {
	h.t.Helper()
	return serve(h.mux, method, path, body, header...)
}

// serve makes one request to h; header holds name, value pairs.
func serve(h http.Handler, method, path, body string, header ...string) response {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	raw, _ := io.ReadAll(rec.Body)
	res := response{status: rec.Code, header: rec.Header(), raw: string(raw)}
	_ = json.Unmarshal(raw, &res.body)
	return res
}

func (h *harness) as(uid, method, path, body string) response {
	h.t.Helper()
	return h.do(method, path, body, "Authorization", "Bearer token-"+uid)
}

func (h *harness) newKey(uid string) string {
	h.t.Helper()
	res := h.as(uid, "POST", "/api/keys", `{"name":"ci"}`)
	if res.status != http.StatusCreated {
		h.t.Fatalf("create key: %d %s", res.status, res.raw)
	}
	return res.body["key"].(string)
}

func (h *harness) credits(uid string) float64 {
	h.t.Helper()
	res := h.as(uid, "GET", "/api/user", "")
	if res.status != http.StatusOK {
		h.t.Fatalf("get user: %d %s", res.status, res.raw)
	}
	return res.body["user"].(map[string]any)["credits"].(float64)
}

func errorCode(t *testing.T, res response) string {
	t.Helper()
	e, ok := res.body["error"].(map[string]any)
	if !ok || e["message"] == "" {
		t.Fatalf("status %d without the contract's error shape: %s", res.status, res.raw)
	}
	return e["code"].(string)
}

func TestPlansArePublic(t *testing.T) {
	h := newHarness(t, nil)
	res := h.do("GET", "/api/plans", "")
	plans, _ := res.body["plans"].([]any)
	if res.status != 200 || len(plans) != 3 {
		t.Fatalf("GET /api/plans = %d %s", res.status, res.raw)
	}
	free := plans[0].(map[string]any)
	if free["name"] != "Free" || free["credits"].(float64) != 50 || free["period"] != "week" || free["prices"] == nil {
		t.Fatalf("Free plan = %v", free)
	}
	// Browsers and the CDN may keep the catalog five minutes; what is
	// personal is never cached.
	if cc := res.header.Get("Cache-Control"); cc != "public, max-age=300" {
		t.Errorf("GET /api/plans Cache-Control = %q, want public, max-age=300", cc)
	}
	if cc := h.do("GET", "/api/user", "").header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("GET /api/user (401) Cache-Control = %q, want no-store", cc)
	}
}

func TestSignedInUserIsProvisionedOnFirstCall(t *testing.T) {
	h := newHarness(t, nil)
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer"}, {"Authorization", "Basic dXNlcg=="}, {"Authorization", "Bearer forged"}} {
		if res := h.do("GET", "/api/user", "", hdr...); res.status != 401 || errorCode(t, res) != "unauthenticated" {
			t.Fatalf("GET /api/user with %v = %d", hdr, res.status)
		}
	}
	res := h.as("alice", "GET", "/api/user", "")
	u := res.body["user"].(map[string]any)
	if res.status != 200 || u["plan"] != "Free" || u["credits"].(float64) != 50 || u["subscription"] != nil {
		t.Fatalf("first GET /api/user = %d %s", res.status, res.raw)
	}
	if u["nextGrantAt"] != t0.Add(billing.Week).Format(time.RFC3339) {
		t.Fatalf("nextGrantAt = %v", u["nextGrantAt"])
	}
	grants := u["grants"].([]any)
	if len(grants) != 1 || grants[0].(map[string]any)["source"] != "free" || grants[0].(map[string]any)["remaining"].(float64) != 50 {
		t.Fatalf("grants = %v", grants)
	}
	h.as("alice", "GET", "/api/user", "")
	if len(h.sched.Tasks()) != 1 || h.sched.Tasks()[0] != (billing.GrantTask{UID: "alice", Period: 1, At: t0.Add(billing.Week)}) {
		t.Fatalf("scheduled = %+v, want the one period-1 grant", h.sched.Tasks())
	}
}

func TestKeysLifecycle(t *testing.T) {
	h := newHarness(t, nil)
	created := h.as("bob", "POST", "/api/keys", `{"name":"ci"}`)
	secret, _ := created.body["key"].(string)
	if created.status != 201 || !billing.WellFormedKey(secret) || created.body["prefix"] == "" || !strings.HasPrefix(secret, created.body["prefix"].(string)) {
		t.Fatalf("POST /api/keys = %d %s", created.status, created.raw)
	}
	list := h.as("bob", "GET", "/api/keys", "")
	if list.status != 200 || strings.Contains(list.raw, secret[8:]) || len(list.body["keys"].([]any)) != 1 {
		t.Fatalf("GET /api/keys = %d %s", list.status, list.raw)
	}
	if strings.Contains(h.logs.String(), secret[8:]) {
		t.Fatal("the secret reached the log")
	}
	id := created.body["id"].(string)
	if res := h.as("mallory", "DELETE", "/api/keys/"+id, ""); res.status != 404 || errorCode(t, res) != "not_found" {
		t.Fatalf("another user's DELETE = %d", res.status)
	}
	if res := h.do("POST", "/api/meter", "", "X-API-Key", secret); res.status != 200 {
		t.Fatalf("the key still works after a foreign revoke attempt: %d", res.status)
	}
	if res := h.as("bob", "DELETE", "/api/keys/"+id, ""); res.status != 204 {
		t.Fatalf("DELETE own key = %d %s", res.status, res.raw)
	}
	if res := refusedWithin(time.Second, func() response { return h.do("POST", "/api/meter", "", "X-API-Key", secret) }); res.status != 401 || errorCode(t, res) != "invalid_api_key" {
		t.Fatalf("revoked key = %d %s", res.status, res.raw)
	}
	if res := h.as("bob", "DELETE", "/api/keys/"+id, ""); res.status != 404 {
		t.Fatalf("second DELETE = %d", res.status)
	}
}

func TestMeterTakesTheKeyThreeWaysAndStopsAtZero(t *testing.T) {
	h := newHarness(t, map[string]string{"METER_COSTS": "/api/meter=1,/api/search=20"})
	key := h.newKey("carol")
	ways := []func() response{
		func() response { return h.do("POST", "/api/meter", "", "Authorization", "Bearer "+key) },
		func() response { return h.do("POST", "/api/meter", "", "X-API-Key", key) },
		func() response {
			return h.do("POST", "/api/meter", `{"key":"`+key+`"}`, "Content-Type", "application/json")
		},
	}
	for i, call := range ways {
		res := call()
		want := 49 - i
		if res.status != 200 || res.body["credits"].(float64) != float64(want) || res.header.Get("X-Credits-Remaining") != fmt.Sprint(want) {
			t.Fatalf("way %d: %d %s (X-Credits-Remaining %q)", i+1, res.status, res.raw, res.header.Get("X-Credits-Remaining"))
		}
	}
	if res := h.do("POST", "/api/search", "", "X-API-Key", key); res.body["credits"].(float64) != 27 {
		t.Fatalf("a route costing 20: %s", res.raw)
	}
	if res := h.do("POST", "/api/search", "", "X-API-Key", key); res.body["credits"].(float64) != 7 {
		t.Fatalf("20 from 27: %s", res.raw)
	}
	if res := h.do("POST", "/api/search", "", "X-API-Key", key); res.status != 402 || errorCode(t, res) != "insufficient_credits" {
		t.Fatalf("20 from 7: %d", res.status)
	}
	if got := h.credits("carol"); got != 7 {
		t.Fatalf("a refused call took credits: %v left", got)
	}
	for _, res := range []response{
		h.do("POST", "/api/meter", ""),
		h.do("POST", "/api/meter", "", "X-API-Key", "pmk_"+strings.Repeat("a", 32)),
		h.do("POST", "/api/meter", "", "X-API-Key", "garbage"),
		h.do("POST", "/api/meter", `{"key":"nope"}`),
	} {
		if res.status != 401 || errorCode(t, res) != "invalid_api_key" {
			t.Fatalf("bad key: %d %s", res.status, res.raw)
		}
	}
}

// Bad input gets the contract's error shape and changes nothing.
func TestBadInputChangesNothing(t *testing.T) {
	h := newHarness(t, map[string]string{"MAX_BODY_BYTES": "4096"})
	key := h.newKey("dave")
	cases := []struct {
		name, method, path, body string
		auth                     bool
		status                   int
		code                     string
	}{
		{"malformed JSON key", "POST", "/api/keys", `{"name":`, true, 400, "bad_request"},
		{"wrong type", "POST", "/api/keys", `{"name":7}`, true, 400, "bad_request"},
		{"unknown field", "POST", "/api/keys", `{"name":"x","admin":true}`, true, 400, "bad_request"},
		{"two objects", "POST", "/api/keys", `{"name":"x"}{"name":"y"}`, true, 400, "bad_request"},
		{"empty body", "POST", "/api/keys", ``, true, 400, "bad_request"},
		{"non-UTF-8", "POST", "/api/keys", "{\"name\":\"\xff\xfe\"}", true, 400, "bad_request"},
		{"absurd name", "POST", "/api/keys", `{"name":"` + strings.Repeat("n", 1000) + `"}`, true, 400, "bad_request"},
		{"oversized", "POST", "/api/keys", `{"name":"` + strings.Repeat("n", 5000) + `"}`, true, 413, "payload_too_large"},
		{"absurd days", "GET", "/api/usage?days=100000", ``, true, 400, "bad_request"},
		{"negative days", "GET", "/api/usage?days=-1", ``, true, 400, "bad_request"},
		{"wrong method", "PUT", "/api/keys", `{}`, true, 405, "method_not_allowed"},
		{"unknown route", "GET", "/api/nothing", ``, true, 404, "not_found"},
		{"meter by GET", "GET", "/api/meter", ``, false, 405, "method_not_allowed"},
		{"meter malformed", "POST", "/api/meter", `{"key":`, false, 400, "bad_request"},
		{"meter array", "POST", "/api/meter", `[1,2]`, false, 400, "bad_request"},
		{"meter non-UTF-8", "POST", "/api/meter", "{\"key\":\"\xff\"}", false, 400, "bad_request"},
		{"meter oversized", "POST", "/api/meter", `{"pad":"` + strings.Repeat("p", 5000) + `"}`, false, 413, "payload_too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := []string{"X-API-Key", key}
			if c.auth {
				hdr = []string{"Authorization", "Bearer token-dave"}
			}
			res := h.do(c.method, c.path, c.body, hdr...)
			if res.status != c.status || errorCode(t, res) != c.code {
				t.Fatalf("%d %s, want %d %s", res.status, res.raw, c.status, c.code)
			}
		})
	}
	if got := h.credits("dave"); got != 50 {
		t.Fatalf("bad input spent credits: %v left", got)
	}
	if keys := h.as("dave", "GET", "/api/keys", "").body["keys"].([]any); len(keys) != 1 {
		t.Fatalf("bad input made keys: %d", len(keys))
	}
}

func TestUsageAndLedger(t *testing.T) {
	h := newHarness(t, nil)
	key := h.newKey("erin")
	for range 3 {
		h.do("POST", "/api/meter", "", "X-API-Key", key)
	}
	res := h.as("erin", "GET", "/api/usage?days=7", "")
	days := res.body["days"].([]any)
	last := days[len(days)-1].(map[string]any)
	if res.status != 200 || len(days) != 7 || last["date"] != "2026-11-26" || last["credits"].(float64) != 3 {
		t.Fatalf("GET /api/usage = %d %s", res.status, res.raw)
	}
	res = h.as("erin", "GET", "/api/ledger", "")
	entries := res.body["entries"].([]any)
	if res.status != 200 || len(entries) != 1 || entries[0].(map[string]any)["kind"] != "grant" {
		t.Fatalf("GET /api/ledger = %d %s", res.status, res.raw)
	}
}

func TestCORSOnlyForConfiguredOrigins(t *testing.T) {
	h := newHarness(t, map[string]string{"CORS_ORIGINS": "https://functions.example.com"})
	ok := h.do("OPTIONS", "/api/meter", "", "Origin", "https://functions.example.com", "Access-Control-Request-Method", "POST")
	if ok.status != 204 || ok.header.Get("Access-Control-Allow-Origin") != "https://functions.example.com" {
		t.Fatalf("preflight from the configured origin: %d %v", ok.status, ok.header)
	}
	for _, res := range []response{
		h.do("OPTIONS", "/api/meter", "", "Origin", "https://evil.example", "Access-Control-Request-Method", "POST"),
		h.do("GET", "/api/plans", "", "Origin", "https://evil.example"),
	} {
		if got := res.header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("a foreign origin was allowed: %q", got)
		}
	}
	if _, err := config.Load(func(k string) string { return map[string]string{"CORS_ORIGINS": "*"}[k] }); err == nil {
		t.Fatal("CORS_ORIGINS=* was accepted")
	}
}
