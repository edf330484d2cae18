package functions_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paymeter/paymeter/ratelimit"
)

// meterEnv meters /api/meter and /api/search.
var meterEnv = map[string]string{"METER_COSTS": "/api/meter=1,/api/search=2"}

// createKey creates uid's key with body and returns the 201's body.
func (h *harness) createKey(uid, body string) map[string]any {
	h.t.Helper()
	res := h.as(uid, "POST", "/api/keys", body)
	if res.status != http.StatusCreated {
		h.t.Fatalf("POST /api/keys %s = %d %s", body, res.status, res.raw)
	}
	return res.body
}

func (h *harness) meter(secret, path string) response {
	h.t.Helper()
	return h.do("POST", path, "", "X-API-Key", secret)
}

func TestKeyOptionsOnCreateShowOnTheList(t *testing.T) {
	h := newHarness(t, meterEnv)
	exp := t0.Add(48 * time.Hour).Format(time.RFC3339)
	k := h.createKey("ann", `{"name":"prod","expiresAt":"`+exp+`","scopes":["/api/search"],"limits":{"perSecond":5,"burst":10,"creditsPerDay":1000}}`)
	if k["expiresAt"] != exp || k["key"] == nil || k["expired"] != false {
		t.Fatalf("created %v", k)
	}
	list := h.as("ann", "GET", "/api/keys", "")
	got := list.body["keys"].([]any)[0].(map[string]any)
	limits := got["limits"].(map[string]any)
	if got["expiresAt"] != exp || got["scopes"].([]any)[0] != "/api/search" || limits["perSecond"] != 5.0 || limits["burst"] != 10.0 ||
		limits["creditsPerDay"] != 1000.0 || got["key"] != nil {
		t.Fatalf("GET /api/keys = %s", list.raw)
	}
	plain := h.createKey("ann", `{"name":"ci"}`)
	if plain["expiresAt"] != nil || len(plain["scopes"].([]any)) != 0 || len(plain["limits"].(map[string]any)) != 0 {
		t.Errorf("a key with no options: %v", plain)
	}
}

// Bad options answer 400 and create or change nothing.
func TestKeyBadOptionsAre400AndChangeNothing(t *testing.T) {
	h := newHarness(t, meterEnv)
	k := h.createKey("ann", `{"name":"ci","scopes":["/api/meter"]}`)
	id := k["id"].(string)
	before := h.as("ann", "GET", "/api/keys", "").raw
	for _, body := range []string{
		`{"name":"x","expiresAt":"` + t0.Add(-time.Minute).Format(time.RFC3339) + `"}`,
		`{"name":"x","expiresAt":"tomorrow"}`,
		`{"name":"x","expiresAt":"2099-01-01T00:00:00Z"}`,
		`{"name":"x","scopes":["/api/unknown"]}`,
		`{"name":"x","scopes":["api/meter"]}`,
		`{"name":"x","limits":{"perSecond":0}}`,
		`{"name":"x","limits":{"perSecond":-1}}`,
		`{"name":"x","limits":{"perSecond":1e12}}`,
		`{"name":"x","limits":{"perSecond":1.5}}`,
		`{"name":"x","limits":{"burst":3}}`,
		`{"name":"x","limits":{"creditsPerDay":0}}`,
		`{"name":"x","limits":{"creditsPerDay":-10}}`,
		`{"name":"x","limits":{"creditsPerDay":99999999999}}`,
		`{"name":"x","limits":{"perMinute":3}}`,
		`{"name":"x","scopes":"/api/meter"}`,
	} {
		if res := h.as("ann", "POST", "/api/keys", body); res.status != 400 || errorCode(t, res) != "bad_request" {
			t.Errorf("POST /api/keys %s = %d %s", body, res.status, res.raw)
		}
		if res := h.as("ann", "PATCH", "/api/keys/"+id, body); res.status != 400 || errorCode(t, res) != "bad_request" {
			t.Errorf("PATCH %s = %d %s", body, res.status, res.raw)
		}
	}
	for _, body := range []string{`{"graceSeconds":-1}`, `{"graceSeconds":99999999}`, `{"graceSeconds":"60"}`} {
		if res := h.as("ann", "POST", "/api/keys/"+id+"/roll", body); res.status != 400 {
			t.Errorf("roll %s = %d %s", body, res.status, res.raw)
		}
	}
	if after := h.as("ann", "GET", "/api/keys", "").raw; after != before {
		t.Errorf("bad input changed the keys:\n%s\n%s", before, after)
	}
}

func TestExpiredKeyAnswers401SayingSoOnTheDevClock(t *testing.T) {
	h := newHarness(t, meterEnv)
	k := h.createKey("ann", `{"name":"temp","expiresAt":"`+t0.Add(time.Hour).Format(time.RFC3339)+`"}`)
	secret := k["key"].(string)
	if res := h.meter(secret, "/api/meter"); res.status != 200 {
		t.Fatalf("before expiry: %d %s", res.status, res.raw)
	}
	h.clock.Add(time.Hour)
	credits := h.credits("ann")
	res := h.meter(secret, "/api/meter")
	if res.status != 401 || errorCode(t, res) != "invalid_api_key" || !strings.Contains(res.raw, "expired") {
		t.Fatalf("after expiry: %d %s", res.status, res.raw)
	}
	if h.credits("ann") != credits {
		t.Error("an expired key was debited")
	}
	list := h.as("ann", "GET", "/api/keys", "")
	if list.body["keys"].([]any)[0].(map[string]any)["expired"] != true {
		t.Errorf("the list does not show it expired: %s", list.raw)
	}
}

func TestScopesRefuseOtherRoutesWith403(t *testing.T) {
	h := newHarness(t, meterEnv)
	secret := h.createKey("ann", `{"name":"search","scopes":["/api/search"]}`)["key"].(string)
	if res := h.meter(secret, "/api/search"); res.status != 200 {
		t.Fatalf("in scope: %d %s", res.status, res.raw)
	}
	credits := h.credits("ann")
	res := h.meter(secret, "/api/meter")
	if res.status != 403 || errorCode(t, res) != "route_not_allowed" {
		t.Fatalf("out of scope: %d %s", res.status, res.raw)
	}
	if h.credits("ann") != credits {
		t.Error("a call out of scope was debited")
	}
}

func TestPatchKeyChangesItsOptions(t *testing.T) {
	h := newHarness(t, meterEnv)
	k := h.createKey("ann", `{"name":"ci","scopes":["/api/search"]}`)
	id, secret := k["id"].(string), k["key"].(string)
	if res := h.as("mallory", "PATCH", "/api/keys/"+id, `{"name":"mine"}`); res.status != 404 {
		t.Fatalf("another user's PATCH = %d", res.status)
	}
	res := h.as("ann", "PATCH", "/api/keys/"+id, `{"name":"prod","scopes":[],"limits":{"creditsPerDay":3}}`)
	if res.status != 200 || res.body["name"] != "prod" || len(res.body["scopes"].([]any)) != 0 || res.body["key"] != nil {
		t.Fatalf("PATCH = %d %s", res.status, res.raw)
	}
	if res := h.meter(secret, "/api/meter"); res.status != 200 {
		t.Fatalf("the scope was not lifted: %d %s", res.status, res.raw)
	}
	res = h.as("ann", "PATCH", "/api/keys/"+id, `{"expiresAt":null,"limits":{}}`)
	if res.status != 200 || res.body["expiresAt"] != nil || len(res.body["limits"].(map[string]any)) != 0 || res.body["name"] != "prod" {
		t.Fatalf("clearing PATCH = %d %s", res.status, res.raw)
	}
}

func TestRollKeepsTheOldKeyForItsGraceThen401(t *testing.T) {
	h := newHarness(t, meterEnv)
	old := h.createKey("ann", `{"name":"prod","scopes":["/api/meter"],"limits":{"creditsPerDay":500}}`)
	res := h.as("ann", "POST", "/api/keys/"+old["id"].(string)+"/roll", `{"graceSeconds":60}`)
	if res.status != 201 || res.body["name"] != "prod" || res.body["scopes"].([]any)[0] != "/api/meter" ||
		res.body["limits"].(map[string]any)["creditsPerDay"] != 500.0 || res.body["id"] == old["id"] {
		t.Fatalf("roll = %d %s", res.status, res.raw)
	}
	next := res.body["key"].(string)
	if list := h.as("ann", "GET", "/api/keys", ""); len(list.body["keys"].([]any)) != 2 {
		t.Fatalf("the list during the grace: %s", list.raw)
	}
	h.clock.Add(59 * time.Second)
	for _, k := range []string{old["key"].(string), next} {
		if res := h.meter(k, "/api/meter"); res.status != 200 {
			t.Fatalf("during the grace: %d %s", res.status, res.raw)
		}
	}
	h.clock.Add(time.Second)
	if res := h.meter(old["key"].(string), "/api/meter"); res.status != 401 || !strings.Contains(res.raw, "rolled") {
		t.Fatalf("the old key after the grace: %d %s", res.status, res.raw)
	}
	if res := h.meter(next, "/api/meter"); res.status != 200 {
		t.Fatalf("the new key: %d %s", res.status, res.raw)
	}
	// No grace: the old key stops at once.
	if again := h.as("ann", "POST", "/api/keys/"+res.body["id"].(string)+"/roll", `{"graceSeconds":0}`); again.status != 201 {
		t.Fatalf("roll with no grace = %d %s", again.status, again.raw)
	}
	if res := refusedWithin(time.Second, func() response { return h.meter(next, "/api/meter") }); res.status != 401 {
		t.Fatalf("the key rolled with no grace: %d %s", res.status, res.raw)
	}
}

// refusedWithin calls call until it answers 401, for up to d and a margin:
// in lease mode a revocation reaches an instance through its listener
// within about a second (txn mode reads the key on every call).
func refusedWithin(d time.Duration, call func() response) response {
	deadline := time.Now().Add(2 * d)
	for {
		res := call()
		if res.status == 401 || time.Now().After(deadline) {
			return res
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A daily cap holds exactly under concurrent calls, counted in the debit's
// transaction, and resets at 00:00 UTC.
func TestDailyCapIsExactUnderConcurrency(t *testing.T) {
	for _, mode := range []string{"txn", "lease"} {
		t.Run(mode, func(t *testing.T) {
			testDailyCap(t, map[string]string{"METER_COSTS": meterEnv["METER_COSTS"], "METER_MODE": mode})
		})
	}
}

func testDailyCap(t *testing.T, env map[string]string) {
	h := newHarness(t, env)
	// An uncapped key of the same account spends beside it (from a lease
	// in lease mode).
	other := h.createKey("ann", `{"name":"free"}`)["key"].(string)
	if res := h.meter(other, "/api/meter"); res.status != 200 {
		t.Fatalf("uncapped key: %d %s", res.status, res.raw)
	}
	secret := h.createKey("ann", `{"name":"capped","limits":{"creditsPerDay":5}}`)["key"].(string)
	const calls = 12
	statuses := make(chan response, calls)
	var wg sync.WaitGroup
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- h.meter(secret, "/api/meter")
		}()
	}
	wg.Wait()
	close(statuses)
	ok := 0
	for res := range statuses {
		switch {
		case res.status == 200:
			ok++
		case res.status == 402 && errorCode(t, res) == "key_limit_reached":
		default:
			t.Errorf("call answered %d %s", res.status, res.raw)
		}
	}
	// The day's usage counts every debit, whichever way it was made.
	if used := h.as("ann", "GET", "/api/usage?days=1", "").body["days"].([]any)[0].(map[string]any)["credits"]; ok != 5 || used != 6.0 {
		t.Fatalf("%d calls let through, %v credits used today; want 5 and 6", ok, used)
	}
	if res := h.meter(secret, "/api/search"); res.status != 402 {
		t.Fatalf("a dearer route past the cap: %d", res.status)
	}
	h.clock.Set(time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC))
	if res := h.meter(secret, "/api/meter"); res.status != 200 {
		t.Fatalf("the next UTC day: %d %s", res.status, res.raw)
	}
}

func TestRateLimitAnswers429WithRetryAfterAndDebitsNothing(t *testing.T) {
	h := newHarness(t, meterEnv)
	secret := h.createKey("ann", `{"name":"slow","limits":{"perSecond":1,"burst":2}}`)["key"].(string)
	for i := range 2 {
		if res := h.meter(secret, "/api/meter"); res.status != 200 {
			t.Fatalf("call %d of the burst: %d %s", i, res.status, res.raw)
		}
	}
	credits := h.credits("ann")
	res := h.meter(secret, "/api/meter")
	if res.status != 429 || errorCode(t, res) != "rate_limited" || res.header.Get("Retry-After") != "1" {
		t.Fatalf("past the burst: %d %v %s", res.status, res.header, res.raw)
	}
	if h.credits("ann") != credits {
		t.Error("a refused call was debited")
	}
	h.clock.Add(time.Second)
	if res := h.meter(secret, "/api/meter"); res.status != 200 {
		t.Fatalf("a second later: %d %s", res.status, res.raw)
	}
}

// Two function instances serving one key on one store, each with its own
// rate limiter as deployed, called in turn every 10 ms of the clock: in
// any second they let through at most perSecond + burst calls, every
// refusal is a 429 with Retry-After, and only the calls let through are
// debited.
func TestRateLimitHoldsAcrossTwoInstances(t *testing.T) {
	h := newHarness(t, meterEnv)
	secret := h.createKey("ann", `{"name":"slow","limits":{"perSecond":2,"burst":2}}`)["key"].(string)
	instances := []*http.ServeMux{
		h.instance(ratelimit.New(h.store, h.clock, ratelimit.Config{Owner: "a"}, nil)),
		h.instance(ratelimit.New(h.store, h.clock, ratelimit.Config{Owner: "b"}, nil)),
	}
	var admitted []time.Time
	for i := range 250 { // 2.5 s
		h.clock.Set(t0.Add(time.Duration(i) * 10 * time.Millisecond))
		for _, mux := range instances {
			res := serve(mux, "POST", "/api/meter", "", "X-API-Key", secret)
			switch {
			case res.status == 200:
				admitted = append(admitted, h.clock.Now())
			case res.status != 429 || errorCode(t, res) != "rate_limited" || res.header.Get("Retry-After") == "":
				t.Fatalf("answer %d %v %s", res.status, res.header, res.raw)
			}
		}
	}
	most := 0
	for i, at := range admitted {
		n := 0
		for _, other := range admitted[i:] {
			if other.Sub(at) < time.Second {
				n++
			}
		}
		most = max(most, n)
	}
	if most > 4 || len(admitted) < 4 {
		t.Errorf("%d calls let through, at most %d in one second; want at most 4 (2/s + burst 2)", len(admitted), most)
	}
	if used := h.as("ann", "GET", "/api/usage?days=1", "").body["days"].([]any)[0].(map[string]any)["credits"]; used != float64(len(admitted)) {
		t.Errorf("%v credits used for %d calls let through", used, len(admitted))
	}
	t.Logf("%d calls let through in 2.5 s, at most %d in any second", len(admitted), most)
}

// POST /api/verify, the upstreams and reservations run the key check of
// metered calls: scopes, rate, daily cap and expiry; a refused call never
// reaches the upstream.
func TestVerifyUpstreamsAndReservationsRunTheKeyCheck(t *testing.T) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer up.Close()
	h := newHarness(t, map[string]string{"PAYMETER_OPERATOR_SECRET": operatorSecret, "METER_COSTS": "/api/meter=1,/v1/search=3",
		"METER_UPSTREAMS": "/up/=" + up.URL})

	scoped := h.createKey("ann", `{"name":"search","scopes":["/v1/search"]}`)["key"].(string)
	if res := h.op("POST", "/api/verify", `{"key":"`+scoped+`","route":"/api/meter"}`); res.status != 403 || errorCode(t, res) != "route_not_allowed" {
		t.Errorf("verify out of scope = %d %s", res.status, res.raw)
	}
	if res := h.op("POST", "/api/verify", `{"key":"`+scoped+`","route":"/v1/search"}`); res.status != 200 {
		t.Errorf("verify in scope = %d %s", res.status, res.raw)
	}
	if res := h.do("POST", "/up/x", `{}`, "X-API-Key", scoped); res.status != 403 || hits.Load() != 0 {
		t.Errorf("upstream out of scope = %d %s, upstream hit %d times", res.status, res.raw, hits.Load())
	}

	slow := h.createKey("ann", `{"name":"slow","limits":{"perSecond":1}}`)["key"].(string)
	if res := h.do("POST", "/up/x", `{}`, "X-API-Key", slow); res.status != 200 || hits.Load() != 1 {
		t.Fatalf("upstream = %d %s", res.status, res.raw)
	}
	res := h.do("POST", "/up/x", `{}`, "X-API-Key", slow)
	if res.status != 429 || res.header.Get("Retry-After") != "1" || hits.Load() != 1 {
		t.Errorf("upstream past the rate = %d %v %s, upstream hit %d times", res.status, res.header, res.raw, hits.Load())
	}
	if res := h.op("POST", "/api/verify", `{"key":"`+slow+`"}`); res.status != 429 || res.header.Get("Retry-After") == "" {
		t.Errorf("verify past the rate = %d %s", res.status, res.raw)
	}

	capped := h.createKey("ann", `{"name":"capped","limits":{"creditsPerDay":3}}`)["key"].(string)
	if res := h.op("POST", "/api/verify", `{"key":"`+capped+`","cost":3}`); res.status != 200 {
		t.Errorf("verify up to the cap = %d %s", res.status, res.raw)
	}
	if res := h.op("POST", "/api/verify", `{"key":"`+capped+`","cost":1}`); res.status != 402 || errorCode(t, res) != "key_limit_reached" {
		t.Errorf("verify past the cap = %d %s", res.status, res.raw)
	}

	expiring := h.createKey("ann", `{"name":"temp","expiresAt":"`+t0.Add(time.Minute).Format(time.RFC3339)+`"}`)["key"].(string)
	h.clock.Add(time.Minute)
	if res := h.op("POST", "/api/reservations", `{"key":"`+expiring+`","credits":1}`); res.status != 401 || !strings.Contains(res.raw, "expired") {
		t.Errorf("reservation with an expired key = %d %s", res.status, res.raw)
	}
}
