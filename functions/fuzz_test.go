package functions_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/devstripe"
	"github.com/paymeter/paymeter/functions"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/payments"
)

// Fuzz targets of the HTTP contract's inputs: the API key of a metered call
// (headers and body), every JSON body of the user API, and the webhook's
// body and signature. They run on in-memory doubles (mock.Store from
// billing_test.go, fzKeys below, the offline Stripe stand-in), so an
// iteration takes microseconds. The seeds run as plain tests in
// `go test ./...`; a longer run is
//
//	go test -run '^$' -fuzz '^FuzzMeterKey$' -fuzztime 60s ./functions
//
// and likewise for FuzzUserBodies and FuzzWebhookDelivery.

const (
	fzMaxBody = 4096
	fzWhsec   = "whsec_fuzz"
	fzUser    = "fuzzer"
)

// fzKeys is an in-memory KeyStore and Meter: keys by hash, each with its
// owner's balance.
type fzKeys struct {
	mu      sync.Mutex
	keys    map[string]billing.APIKey
	balance map[string]int64 // by hash
}

func (k *fzKeys) CreateKey(_ context.Context, hash string, key billing.APIKey) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, x := range k.keys {
		if x.UID == key.UID && !x.Revoked {
			n++
		}
	}
	if n >= billing.MaxKeys {
		return billing.ErrTooManyKeys
	}
	k.keys[hash] = key
	k.balance[hash] = 50
	return nil
}

func (k *fzKeys) Keys(_ context.Context, uid string) ([]billing.APIKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []billing.APIKey
	for _, x := range k.keys {
		if x.UID == uid && !x.Revoked {
			out = append(out, x)
		}
	}
	return out, nil
}

func (k *fzKeys) RevokeKey(_ context.Context, uid, id string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for h, x := range k.keys {
		if x.UID == uid && x.ID == id && !x.Revoked {
			x.Revoked = true
			k.keys[h] = x
			return nil
		}
	}
	return billing.ErrNotFound
}

func (k *fzKeys) Key(_ context.Context, hash string) (billing.APIKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	x, ok := k.keys[hash]
	if !ok {
		return billing.APIKey{}, billing.ErrInvalidAPIKey
	}
	return x, nil
}

func (k *fzKeys) own(uid, id string) (string, bool) {
	for h, x := range k.keys {
		if x.UID == uid && x.ID == id && !x.Revoked {
			return h, true
		}
	}
	return "", false
}

func (k *fzKeys) UpdateKey(_ context.Context, uid, id string, fn func(*billing.APIKey) error) (billing.APIKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, ok := k.own(uid, id)
	if !ok {
		return billing.APIKey{}, billing.ErrNotFound
	}
	x := k.keys[h]
	if err := fn(&x); err != nil {
		return billing.APIKey{}, err
	}
	k.keys[h] = x
	return x, nil
}

func (k *fzKeys) RollKey(_ context.Context, uid, id string, roll func(*billing.APIKey) (string, billing.APIKey, error)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, ok := k.own(uid, id)
	if !ok {
		return billing.ErrNotFound
	}
	x := k.keys[h]
	nh, next, err := roll(&x)
	if err != nil {
		return err
	}
	k.keys[h], k.keys[nh], k.balance[nh] = x, next, k.balance[h]
	return nil
}

func (k *fzKeys) DebitKey(_ context.Context, hash string, cost int64, _ time.Time) (int64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	x, ok := k.keys[hash]
	if !ok || x.Revoked {
		return 0, billing.ErrInvalidAPIKey
	}
	if k.balance[hash] < cost {
		return 0, billing.ErrInsufficientCredits
	}
	k.balance[hash] -= cost
	return k.balance[hash], nil
}

// fuzzServer is every entry point on the doubles, with the stand-in's /dev
// routes and a signed-in user who holds one key with credits, one without,
// a subscription and a charge.
type fuzzServer struct {
	mux     *http.ServeMux
	dev     *devstripe.Stripe
	keys    *fzKeys
	key     string // a key with credits (topped up before each metered call)
	broke   string // a key with none
	sub     string // a stand-in subscription of the user
	charge  string // a stand-in charge of the user
	events  [][]byte
	logs    *bytes.Buffer
	logsMux sync.Mutex
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func newFuzzServer(tb testing.TB) *fuzzServer {
	tb.Helper()
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"PUBLIC_URL": "http://paymeter.test", "MAX_BODY_BYTES": fmt.Sprint(fzMaxBody),
			"METER_COSTS": "/api/meter=1,/api/search=5"}[k]
	})
	if err != nil {
		tb.Fatal(err)
	}
	fs := &fuzzServer{mux: http.NewServeMux(), keys: &fzKeys{keys: map[string]billing.APIKey{}, balance: map[string]int64{}},
		logs: &bytes.Buffer{}}
	st := mock.NewStore()
	clk := clock.NewFixed(t0)
	fs.dev = devstripe.New(devstripe.Config{PublicURL: "http://paymeter.test", WebhookSecret: fzWhsec, Webhook: fs.mux,
		Catalog: billing.DefaultCatalog(), Clock: clk, Random: mrand.NewChaCha8([32]byte{'a', 'p', 'i'}), Wait: time.Second})
	tb.Cleanup(fs.dev.Close)
	srv := &functions.Server{Config: cfg, Catalog: billing.DefaultCatalog(), Accounts: st, History: st, Keys: fs.keys,
		Meter: fs.keys, Events: st, Scheduler: &mock.Scheduler{}, Payments: fs.dev, Webhooks: payments.NewWebhook(fzWhsec),
		Auth: tokens{}, Clock: clk, Random: rand.Reader,
		Log: slog.New(slog.NewTextHandler(lockedWriter{&fs.logsMux, fs.logs}, &slog.HandlerOptions{Level: slog.LevelError}))}
	srv.Mount(fs.mux, srv.Functions())
	fs.mux.Handle("/dev/", fs.dev.Routes())

	mustDo := func(status int, method, path, body string, hdr ...string) map[string]any {
		code, raw := fs.do(method, path, []byte(body), hdr...)
		if code != status {
			tb.Fatalf("%s %s: %d %s", method, path, code, raw)
		}
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		return out
	}
	auth := []string{"Authorization", "Bearer token-" + fzUser}
	fs.key = mustDo(201, "POST", "/api/keys", `{"name":"good"}`, auth...)["key"].(string)
	fs.broke = mustDo(201, "POST", "/api/keys", `{"name":"broke"}`, auth...)["key"].(string)
	fs.keys.balance[billing.HashKey(fs.broke)] = 0
	for _, sub := range []bool{true, false} {
		co := mustDo(200, "POST", "/api/checkout", fmt.Sprintf(`{"plan":"Basic","subscribe":%v}`, sub), auth...)
		mustDo(200, "POST", "/dev/checkout/"+co["sessionId"].(string)+"/complete", "")
	}
	var state map[string][]map[string]any
	_, raw := fs.do("GET", "/dev/state", nil)
	if err := json.Unmarshal(raw, &state); err != nil {
		tb.Fatal(err)
	}
	fs.sub = state["subscriptions"][0]["id"].(string)
	fs.charge = state["charges"][len(state["charges"])-1]["id"].(string)
	clk.Set(t0.Add(time.Hour))
	mustDo(200, "POST", "/dev/subscriptions/"+fs.sub+"/renew", "")
	mustDo(200, "POST", "/dev/charges/"+fs.charge+"/refund", `{"amount":100}`)
	mustDo(200, "POST", "/dev/charges/"+fs.charge+"/dispute", "")
	for _, id := range fs.dev.EventIDs() {
		p, _ := fs.dev.Payload(id)
		fs.events = append(fs.events, p)
	}
	return fs
}

func (fs *fuzzServer) do(method, path string, body []byte, hdr ...string) (int, []byte) {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	fs.mux.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// checkAnswer holds an answer to the contract: never 5xx, a status among
// allowed, and an error in the contract's shape, with the code its status
// stands for.
func (fs *fuzzServer) checkAnswer(t *testing.T, status int, raw []byte, allowed ...int) {
	t.Helper()
	if status >= 500 {
		fs.logsMux.Lock()
		defer fs.logsMux.Unlock()
		t.Fatalf("status %d: %s\nlog: %s", status, raw, fs.logs)
	}
	ok := len(allowed) == 0
	for _, a := range allowed {
		ok = ok || status == a
	}
	if !ok {
		t.Fatalf("status %d, want one of %v: %s", status, allowed, raw)
	}
	if status == http.StatusNoContent {
		return
	}
	if !json.Valid(raw) {
		t.Fatalf("status %d with a body that is not JSON: %q", status, raw)
	}
	if status < 400 {
		return
	}
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &e); err != nil || e.Error == nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("status %d without the contract's error shape: %s", status, raw)
	}
	want := map[int][]string{400: {billing.CodeBadRequest, billing.CodeInvalidPlan, billing.CodeInvalidSignature},
		401: {billing.CodeUnauthenticated, billing.CodeInvalidAPIKey}, 402: {billing.CodeInsufficientCredits},
		404: {billing.CodeNotFound}, 405: {billing.CodeMethodNotAllowed},
		409: {billing.CodeConflict, billing.CodeAlreadySubscribed, billing.CodeTooManyKeys}, 413: {billing.CodeTooLarge}}[status]
	for _, c := range want {
		if c == e.Error.Code {
			return
		}
	}
	t.Fatalf("status %d with code %q", status, e.Error.Code)
}

// FuzzMeterKey: POST /api/meter with any Authorization and X-API-Key
// headers, Content-Type and body never panics and never answers 5xx; the
// answer is 200 {"credits":n} with X-Credits-Remaining, or 400, 401, 402 or
// 413 in the contract's error shape. A key in the Authorization header
// wins over X-API-Key, which wins over the body.
func FuzzMeterKey(f *testing.F) {
	fs := newFuzzServer(f)
	// Placeholders: "GOOD" and "BROKE" stand for the server's two keys.
	for _, s := range []struct{ auth, xkey, ctype, body string }{
		{"Bearer GOOD", "", "", ""},
		{"bearer   GOOD  ", "", "", ""},
		{"", "GOOD", "", ""},
		{"", "", "application/json", `{"key":"GOOD"}`},
		{"", "", "text/plain", `{"key":"GOOD","extra":[1,{"a":null}]}`},
		{"Bearer BROKE", "GOOD", "", ""},
		{"", "BROKE", "", `{"key":"GOOD"}`},
		{"Basic GOOD", "", "", ""},
		{"Bearer", "", "", ""},
		{"", "", "", `{"key":null}`},
		{"", "", "", `{"key":7}`},
		{"", "", "", `{"key":"GOOD"}{"key":"GOOD"}`},
		{"", "", "", `["GOOD"]`},
		{"", "", "", `"GOOD"`},
		{"", "", "", "{\"key\":\"\xff\"}"},
		{"", "", "", `{"key":"GOOD"` + strings.Repeat(" ", fzMaxBody) + `}`},
		{"Bearer GOOD", "", "", `{"key":`},
		{"Bearer pmk_" + strings.Repeat("a", 43), "", "", ""},
		{"Bearer pmk_" + strings.Repeat("!", 43), "", "", ""},
		{"", "pmk_", "", ""},
		{"", " ", "", "   \n\t "},
	} {
		f.Add(s.auth, s.xkey, s.ctype, []byte(s.body), uint8(0))
	}
	f.Add("Bearer GOOD", "", "", []byte(nil), uint8(1))
	f.Add("", "GOOD", "", []byte(nil), uint8(2))
	paths := []string{"/api/meter", "/api/search", "/api/meter/x"}
	f.Fuzz(func(t *testing.T, auth, xkey, ctype string, body []byte, route uint8) {
		sub := strings.NewReplacer("GOOD", fs.key, "BROKE", fs.broke)
		auth, xkey, body = sub.Replace(auth), sub.Replace(xkey), []byte(sub.Replace(string(body)))
		fs.keys.mu.Lock()
		fs.keys.balance[billing.HashKey(fs.key)] = 1_000
		fs.keys.mu.Unlock()
		path := paths[int(route)%len(paths)]
		hdr := []string{}
		for _, h := range [][2]string{{"Authorization", auth}, {"X-API-Key", xkey}, {"Content-Type", ctype}} {
			if h[1] != "" {
				hdr = append(hdr, h[0], h[1])
			}
		}
		status, raw := fs.do("POST", path, body, hdr...)
		if path == "/api/meter/x" {
			fs.checkAnswer(t, status, raw, 404)
			return
		}
		fs.checkAnswer(t, status, raw, 200, 400, 401, 402, 413)
		if status == 200 {
			var out struct {
				Credits *int64 `json:"credits"`
			}
			if err := json.Unmarshal(raw, &out); err != nil || out.Credits == nil || *out.Credits < 0 {
				t.Fatalf("200 without credits: %s", raw)
			}
		}
		// The precedence of the contract: a good key by Authorization with
		// an acceptable body always pays.
		if auth == "Bearer "+fs.key && len(body) == 0 && status != 200 {
			t.Fatalf("the good key as a bearer token: %d %s", status, raw)
		}
	})
}

// FuzzUserBodies: every JSON body of the user API and of the stand-in's
// /dev actions (POST /api/keys, /api/checkout, /api/cancel, /api/portal,
// /dev/subscriptions/{id}/update|cancel|renew|fail, /dev/charges/{id}/refund)
// with any Content-Type never answers 5xx, and answers JSON: an error in the
// contract's shape, or the resource.
func FuzzUserBodies(f *testing.F) {
	fs := newFuzzServer(f)
	routes := []string{"/api/keys", "/api/checkout", "/api/cancel", "/api/portal",
		"/dev/subscriptions/SUB/update", "/dev/subscriptions/SUB/cancel", "/dev/charges/CHARGE/refund",
		"/dev/subscriptions/SUB/renew", "/dev/subscriptions/SUB/fail", "/dev/subscriptions/sub_nope/update"}
	bodies := []string{``, `{}`, `{"name":"ci"}`, `{"name":""}`, `{"name":7}`, `{"name":"` + strings.Repeat("n", 200) + `"}`,
		`{"plan":"Basic","subscribe":true}`, `{"plan":"Power"}`, `{"plan":"Free"}`, `{"plan":"basic","subscribe":"yes"}`,
		`{"plan":null}`, `{"atPeriodEnd":true}`, `{"amount":-5}`, `{"amount":1e30}`, `{"amount":99999999}`,
		`{"plan":"Basic"}{"plan":"Power"}`, `[{"plan":"Basic"}]`, `{"name":"\ud800"}`, "{\"name\":\"\xff\"}",
		`{"name":"x","name":"y"}`, `{"__proto__":{}}`, `plan=Power&atPeriodEnd=true&return=/dev/x`, `{"name":`,
		strings.Repeat(`{"a":`, 2000)}
	for i := range routes {
		for j, b := range bodies {
			if (i+j)%3 == 0 || i < 2 {
				ct := "application/json"
				if strings.Contains(b, "=") && !strings.Contains(b, "{") {
					ct = "application/x-www-form-urlencoded"
				}
				f.Add(uint8(i), ct, []byte(b))
			}
		}
	}
	f.Add(uint8(0), "", []byte(`{"name":"x"`+strings.Repeat(" ", fzMaxBody)+`}`))
	f.Fuzz(func(t *testing.T, route uint8, ctype string, body []byte) {
		path := strings.NewReplacer("SUB", fs.sub, "CHARGE", fs.charge).Replace(routes[int(route)%len(routes)])
		hdr := []string{"Authorization", "Bearer token-" + fzUser}
		if ctype != "" {
			hdr = append(hdr, "Content-Type", ctype)
		}
		status, raw := fs.do("POST", path, body, hdr...)
		if strings.HasPrefix(path, "/dev/") && status == http.StatusSeeOther {
			return // a form action goes back to a page
		}
		fs.checkAnswer(t, status, raw)
		if status == http.StatusCreated {
			// Keep the user under the key limit so that creation stays reachable.
			var k struct{ ID string }
			_ = json.Unmarshal(raw, &k)
			fs.do("DELETE", "/api/keys/"+k.ID, nil, hdr...)
		}
	})
}

// FuzzWebhookDelivery: POST /api/stripe/webhook with any body and
// Stripe-Signature header, or any body validly signed, never answers 5xx
// and never panics; an unsigned body is always 400 invalid_signature (or
// 413 when oversized).
func FuzzWebhookDelivery(f *testing.F) {
	fs := newFuzzServer(f)
	for _, p := range fs.events {
		f.Add(p, "", true)
		f.Add(p, "t=1700000000,v1="+strings.Repeat("ab", 32), false)
		f.Add(bytes.Replace(p, []byte(`"type": "`), []byte(`"type": "x`), 1), "", true)
	}
	f.Add([]byte(`{"id":"evt_x","object":"event","api_version":"2023-10-16","type":"charge.dispute.created","data":{"object":{"charge":"ch_nope","amount":5}}}`), "", true)
	f.Add([]byte(`{"id":"evt_y","object":"event","api_version":"2023-10-16","type":"invoice.paid","data":{"object":{"subscription":"sub_1","subscription_details":{"metadata":{"uid":"nobody"}},"lines":{"data":[{"amount":1,"price":{"metadata":{"plan":"Basic"}}}]}}}}`), "", true)
	f.Add([]byte(`{"id":"evt_z","object":"event","api_version":"2023-10-16","type":"customer.subscription.updated","data":{"object":{"customer":"cus_x","metadata":{"uid":"fuzzer"},"status":"active","items":{"data":[{"price":{"lookup_key":"Gold_monthly_price"}}]}}}}`), "", true)
	f.Add([]byte(strings.Repeat("x", 2<<20)), "", false)
	f.Fuzz(func(t *testing.T, body []byte, sig string, signed bool) {
		if signed {
			sig = webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: fzWhsec, Timestamp: time.Now()}).Header
		}
		status, raw := fs.do("POST", "/api/stripe/webhook", body, "Stripe-Signature", sig, "Content-Type", "application/json")
		if !signed {
			fs.checkAnswer(t, status, raw, 400, 413)
			return
		}
		fs.checkAnswer(t, status, raw, 200, 400, 413)
	})
}
