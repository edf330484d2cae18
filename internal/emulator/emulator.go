// Package emulator connects tests to the Firebase emulators that
// `make test` starts (scripts/emulators.sh). With CI=true a missing emulator
// fails the test; elsewhere it skips, naming the command that starts them.
//
// Standard library only, so any package's tests can use it.
package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// DefaultProject is the Firebase project id of local work (firebase.json,
// scripts/emulators.sh). Emulator projects start with "demo-" so that nothing
// can reach a real project.
const DefaultProject = "demo-paymeter"

var client = &http.Client{Timeout: 10 * time.Second}

// Project returns the project id the emulators were started for:
// GOOGLE_CLOUD_PROJECT when set (scripts/emulators.sh exports it), else
// DefaultProject.
func Project() string {
	if p := os.Getenv("GOOGLE_CLOUD_PROJECT"); p != "" {
		return p
	}
	return DefaultProject
}

// unavailable fails the test under CI=true and skips it otherwise.
func unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// need returns the host:port in env once GET / on it answers with want in
// the body.
func need(t testing.TB, env, what, want string) string {
	t.Helper()
	host := os.Getenv(env)
	if host == "" {
		unavailable(t, fmt.Sprintf("the %s emulator is not configured (%s is unset): run the tests with `make test`, which starts it", what, env))
		return ""
	}
	c := &http.Client{Timeout: 3 * time.Second}
	res, err := c.Get("http://" + host + "/")
	if err == nil {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		res.Body.Close()
		if res.StatusCode == http.StatusOK && strings.Contains(string(body), want) {
			return host
		}
		err = fmt.Errorf("GET / answered %d %q", res.StatusCode, truncate(body))
	}
	unavailable(t, fmt.Sprintf("the %s emulator is not reachable at %s=%s (%v): run the tests with `make test`, which starts it", what, env, host, err))
	return ""
}

// Firestore returns the Firestore emulator's host:port (FIRESTORE_EMULATOR_HOST)
// once it answers. The project to use is Project().
func Firestore(t testing.TB) string {
	t.Helper()
	return need(t, "FIRESTORE_EMULATOR_HOST", "Firestore", "Ok")
}

// Auth returns the Auth emulator's host:port (FIREBASE_AUTH_EMULATOR_HOST)
// once it answers.
func Auth(t testing.TB) string {
	t.Helper()
	return need(t, "FIREBASE_AUTH_EMULATOR_HOST", "Auth", "authEmulator")
}

// do makes one request and decodes a JSON answer into out (when not nil);
// any status but 200 fails the test.
func do(t testing.TB, method, rawURL string, headers map[string]string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, rawURL, body)
	if err != nil {
		t.Fatal(err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: status %d: %s", method, rawURL, res.StatusCode, truncate(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, rawURL, truncate(b), err)
		}
	}
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

type tokenAnswer struct {
	LocalID string `json:"localId"`
	IDToken string `json:"idToken"`
}

// SignUp creates a user with email and password in the Auth emulator and
// returns its uid and an ID token (valid for an hour, for Project()).
func SignUp(t testing.TB, email, password string) (uid, idToken string) {
	t.Helper()
	host := Auth(t)
	var out tokenAnswer
	do(t, "POST", "http://"+host+"/identitytoolkit.googleapis.com/v1/accounts:signUp?key=fake-api-key", nil,
		map[string]any{"email": email, "password": password, "returnSecureToken": true}, &out)
	if out.LocalID == "" || out.IDToken == "" {
		t.Fatalf("sign up %s: no uid or token in the answer", email)
	}
	return out.LocalID, out.IDToken
}

// SignIn signs an existing user in with email and password and returns a
// fresh ID token.
func SignIn(t testing.TB, email, password string) (uid, idToken string) {
	t.Helper()
	host := Auth(t)
	var out tokenAnswer
	do(t, "POST", "http://"+host+"/identitytoolkit.googleapis.com/v1/accounts:signInWithPassword?key=fake-api-key", nil,
		map[string]any{"email": email, "password": password, "returnSecureToken": true}, &out)
	return out.LocalID, out.IDToken
}

// VerifyEmail marks the email of the Auth emulator's user uid as verified,
// as following the verification link does. Tokens minted before keep saying
// it is not: sign in again for one that says it is.
func VerifyEmail(t testing.TB, uid string) {
	t.Helper()
	host := Auth(t)
	do(t, "POST", "http://"+host+"/identitytoolkit.googleapis.com/v1/projects/"+url.PathEscape(Project())+"/accounts:update",
		map[string]string{"Authorization": "Bearer owner"}, map[string]any{"localId": uid, "emailVerified": true}, nil)
}

// ClearFirestore deletes every document of project's default database in the
// Firestore emulator. `go test ./...` runs packages in parallel against the
// same emulator, so clear only a project that your test owns.
func ClearFirestore(t testing.TB, project string) {
	t.Helper()
	host := Firestore(t)
	do(t, "DELETE", "http://"+host+"/emulator/v1/projects/"+url.PathEscape(project)+"/databases/(default)/documents", nil, nil, nil)
}

// ClearAuth deletes every user of project in the Auth emulator (with the same
// caution as ClearFirestore: SignUp's users belong to the emulator's project,
// which other packages' tests share).
func ClearAuth(t testing.TB, project string) {
	t.Helper()
	host := Auth(t)
	do(t, "DELETE", "http://"+host+"/emulator/v1/projects/"+url.PathEscape(project)+"/accounts", nil, nil, nil)
}

// LoadRules loads the security rules in rulesFile for project in the
// Firestore emulator. Rules are per project: a rules test takes a project of
// its own (say "demo-rules-<n>") and the same emulator serves the other tests
// with no rules. Requests with "Authorization: Bearer owner" bypass rules.
func LoadRules(t testing.TB, project, rulesFile string) {
	t.Helper()
	host := Firestore(t)
	src, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	do(t, "PUT", "http://"+host+"/emulator/v1/projects/"+url.PathEscape(project)+":securityRules", nil,
		map[string]any{"rules": map[string]any{"files": []any{map[string]string{"name": "firestore.rules", "content": string(src)}}}}, nil)
}
