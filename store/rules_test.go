package store_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/paymeter/paymeter/internal/emulator"
)

// rulesClient talks to the Firestore emulator's REST API as one user (or as
// the admin "owner", who bypasses the rules) on a project with the repo's
// firestore.rules loaded.
type rulesClient struct {
	t       *testing.T
	host    string
	project string
}

func newRulesProject(t *testing.T) *rulesClient {
	t.Helper()
	host := emulator.Firestore(t)
	rules, err := os.ReadFile("../firestore.rules")
	if err != nil {
		t.Fatal(err)
	}
	c := &rulesClient{t: t, host: host, project: fmt.Sprintf("demo-rules-%d", time.Now().UnixNano())}
	body, _ := json.Marshal(map[string]any{"rules": map[string]any{"files": []any{map[string]string{"name": "firestore.rules", "content": string(rules)}}}})
	req, _ := http.NewRequest("PUT", "http://"+host+"/emulator/v1/projects/"+c.project+":securityRules", bytes.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("load rules: %v %v", res, err)
	}
	res.Body.Close()
	return c
}

// idToken is an unsigned ID token for uid, which the emulator accepts.
func (c *rulesClient) idToken(uid string) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "none", "typ": "JWT"}) + "." + enc(map[string]any{
		"iss": "https://securetoken.google.com/" + c.project, "aud": c.project, "sub": uid, "user_id": uid,
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(), "auth_time": time.Now().Unix(),
		"firebase": map[string]any{"sign_in_provider": "password", "identities": map[string]any{}},
	}) + "."
}

// call makes a REST call as who ("" anonymous, "owner" the admin, else a
// uid) and returns the status.
func (c *rulesClient) call(who, method, path string, body any) int {
	c.t.Helper()
	var r *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	} else {
		r = bytes.NewReader(nil)
	}
	url := "http://" + c.host + "/v1/projects/" + c.project + "/databases/(default)/documents" + path
	req, _ := http.NewRequest(method, url, r)
	req.Header.Set("Content-Type", "application/json")
	switch who {
	case "":
	case "owner":
		req.Header.Set("Authorization", "Bearer owner")
	default:
		req.Header.Set("Authorization", "Bearer "+c.idToken(who))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func fields(kv map[string]any) map[string]any {
	f := map[string]any{}
	for k, v := range kv {
		switch v := v.(type) {
		case string:
			f[k] = map[string]any{"stringValue": v}
		case int:
			f[k] = map[string]any{"integerValue": fmt.Sprint(v)}
		case bool:
			f[k] = map[string]any{"booleanValue": v}
		}
	}
	return map[string]any{"fields": f}
}

func TestSecurityRules(t *testing.T) {
	c := newRulesProject(t)
	seed := map[string]map[string]any{
		"/accounts/alice":               {"uid": "alice", "plan": "Free", "credits": 50},
		"/accounts/alice/ledger/g1":     {"kind": "grant", "credits": 50},
		"/accounts/alice/usage/2026-11": {"note": "usage"},
		"/accounts/bob":                 {"uid": "bob", "plan": "Power", "credits": 100000},
		"/accounts/bob/ledger/g1":       {"kind": "grant", "credits": 100000},
		"/apiKeys/abc123":               {"uid": "alice", "prefix": "pmk_abcdefgh", "revoked": false},
		"/stripeEvents/evt_1":           {"uid": "alice"},
		"/plans/Basic":                  {"name": "Basic", "credits": 1000},
		"/secrets/x":                    {"v": "x"},
	}
	for path, doc := range seed {
		if got := c.call("owner", "PATCH", path, fields(doc)); got != 200 {
			t.Fatalf("seed %s: %d", path, got)
		}
	}
	cases := []struct {
		who, method, path string
		body              map[string]any
		allowed           bool
	}{
		{"alice", "GET", "/accounts/alice", nil, true},
		{"alice", "GET", "/accounts/alice/ledger/g1", nil, true},
		{"alice", "GET", "/accounts/alice/usage/2026-11", nil, true},
		{"alice", "GET", "/accounts/alice/ledger", nil, true},
		{"bob", "GET", "/accounts/alice", nil, false},
		{"bob", "GET", "/accounts/alice/ledger/g1", nil, false},
		{"bob", "GET", "/accounts/alice/usage/2026-11", nil, false},
		{"", "GET", "/accounts/alice", nil, false},
		{"alice", "GET", "/accounts", nil, false},
		{"", "GET", "/plans/Basic", nil, true},
		{"alice", "GET", "/plans", nil, true},
		{"alice", "GET", "/apiKeys/abc123", nil, false},
		{"alice", "GET", "/apiKeys", nil, false},
		{"alice", "GET", "/stripeEvents/evt_1", nil, false},
		{"alice", "GET", "/secrets/x", nil, false},
		{"alice", "PATCH", "/accounts/alice", map[string]any{"uid": "alice", "plan": "Power", "credits": 100000}, false},
		{"alice", "PATCH", "/accounts/alice?updateMask.fieldPaths=credits", map[string]any{"credits": 1000000}, false},
		{"alice", "DELETE", "/accounts/alice", nil, false},
		{"alice", "PATCH", "/accounts/alice/ledger/g2", map[string]any{"kind": "grant", "credits": 999}, false},
		{"alice", "PATCH", "/accounts/alice/usage/2026-11", map[string]any{"note": "reset"}, false},
		{"alice", "PATCH", "/apiKeys/mine", map[string]any{"uid": "alice", "revoked": false}, false},
		{"alice", "PATCH", "/apiKeys/abc123", map[string]any{"uid": "alice", "revoked": false}, false},
		{"alice", "PATCH", "/stripeEvents/evt_2", map[string]any{"uid": "alice"}, false},
		{"alice", "PATCH", "/plans/Basic", map[string]any{"name": "Basic", "credits": 1}, false},
		{"", "PATCH", "/plans/Free", map[string]any{"name": "Free", "credits": 1}, false},
	}
	for _, tc := range cases {
		var body any
		if tc.body != nil {
			body = fields(tc.body)
		}
		got := c.call(tc.who, tc.method, tc.path, body)
		if allowed := got == 200; allowed != tc.allowed {
			t.Errorf("%q %s %s: status %d, allowed=%v want %v", tc.who, tc.method, tc.path, got, allowed, tc.allowed)
		}
	}
	if got := c.call("owner", "GET", "/accounts/alice", nil); got != 200 {
		t.Fatalf("account gone after the denied writes: %d", got)
	}
}
