package emulator

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTB records whether a helper skipped or failed; both end the goroutine
// as the real ones do.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	skipped bool
	failed  bool
	msg     string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(args ...any) {
	f.mu.Lock()
	f.skipped, f.msg = true, fmt.Sprint(args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) Fatal(args ...any) {
	f.mu.Lock()
	f.failed, f.msg = true, fmt.Sprint(args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) { f.Fatal(fmt.Sprintf(format, args...)) }

func run(fn func(testing.TB)) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestMissingEmulatorSkipsLocallyAndFailsInCI(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func(testing.TB)
		env  string
	}{
		{"firestore", func(tb testing.TB) { Firestore(tb) }, "FIRESTORE_EMULATOR_HOST"},
		{"auth", func(tb testing.TB) { Auth(tb) }, "FIREBASE_AUTH_EMULATOR_HOST"},
	} {
		for _, host := range []string{"", closedPort(t)} {
			for _, ci := range []string{"", "true"} {
				t.Run(fmt.Sprintf("%s host=%q CI=%q", tc.name, host, ci), func(t *testing.T) {
					t.Setenv(tc.env, host)
					t.Setenv("CI", ci)
					f := run(tc.call)
					if ci == "true" && (!f.failed || f.skipped) {
						t.Errorf("CI=true: failed=%v skipped=%v, want a failure", f.failed, f.skipped)
					}
					if ci == "" && (!f.skipped || f.failed) {
						t.Errorf("no CI: failed=%v skipped=%v, want a skip", f.failed, f.skipped)
					}
					if !strings.Contains(f.msg, "make test") || !strings.Contains(f.msg, tc.env) {
						t.Errorf("message %q names neither `make test` nor %s", f.msg, tc.env)
					}
				})
			}
		}
	}
}

func TestWrongServiceIsNotAnEmulator(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello")
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	t.Setenv("FIREBASE_AUTH_EMULATOR_HOST", l.Addr().String())
	t.Setenv("CI", "true")
	if f := run(func(tb testing.TB) { Auth(tb) }); !f.failed {
		t.Errorf("a server that is not the Auth emulator was accepted")
	}
}

func TestProject(t *testing.T) {
	t.Setenv("GOOGLE_CLOUD_PROJECT", "")
	if got := Project(); got != DefaultProject {
		t.Errorf("Project() = %q, want %q", got, DefaultProject)
	}
	t.Setenv("GOOGLE_CLOUD_PROJECT", "demo-other")
	if got := Project(); got != "demo-other" {
		t.Errorf("Project() = %q, want demo-other", got)
	}
}

// ownProject is a project no other test uses, so clearing it is safe.
func ownProject(t *testing.T) string {
	return fmt.Sprintf("demo-emulator-test-%d", time.Now().UnixNano())
}

func TestFirestoreWriteReadClear(t *testing.T) {
	host := Firestore(t)
	project := ownProject(t)
	doc := "http://" + host + "/v1/projects/" + project + "/databases/(default)/documents/things/one"
	owner := map[string]string{"Authorization": "Bearer owner"}
	do(t, "PATCH", doc, owner, map[string]any{"fields": map[string]any{"n": map[string]string{"integerValue": "42"}}}, nil)
	var got struct {
		Fields struct {
			N struct {
				IntegerValue string `json:"integerValue"`
			} `json:"n"`
		} `json:"fields"`
	}
	do(t, "GET", doc, owner, nil, &got)
	if got.Fields.N.IntegerValue != "42" {
		t.Fatalf("read back %+v, want n=42", got)
	}
	ClearFirestore(t, project)
	req, _ := http.NewRequest("GET", doc, nil)
	req.Header.Set("Authorization", "Bearer owner")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("after ClearFirestore: status %d, want 404", res.StatusCode)
	}
}

func TestSignUpAndSignIn(t *testing.T) {
	Auth(t)
	email := fmt.Sprintf("user-%d@example.com", time.Now().UnixNano())
	uid, token := SignUp(t, email, "correct horse")
	if uid == "" {
		t.Fatal("no uid")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWT", token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Aud   string `json:"aud"`
		Sub   string `json:"sub"`
		Email string `json:"email"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Sub != uid || claims.Email != email || claims.Aud != Project() {
		t.Errorf("claims %+v, want sub=%s email=%s aud=%s", claims, uid, email, Project())
	}
	uid2, token2 := SignIn(t, email, "correct horse")
	if uid2 != uid || token2 == "" {
		t.Errorf("SignIn = %q, %q; want uid %q and a token", uid2, token2, uid)
	}
}

func TestClearAuth(t *testing.T) {
	host := Auth(t)
	project := ownProject(t)
	owner := map[string]string{"Authorization": "Bearer owner"}
	base := "http://" + host + "/identitytoolkit.googleapis.com/v1/projects/" + project
	var created struct {
		LocalID string `json:"localId"`
	}
	do(t, "POST", base+"/accounts", owner, map[string]any{"email": "a@example.com", "password": "secret1"}, &created)
	lookup := func() int {
		var out struct {
			Users []any `json:"users"`
		}
		do(t, "POST", base+"/accounts:lookup", owner, map[string]any{"localId": []string{created.LocalID}}, &out)
		return len(out.Users)
	}
	if n := lookup(); n != 1 {
		t.Fatalf("before ClearAuth: %d users, want 1", n)
	}
	ClearAuth(t, project)
	if n := lookup(); n != 0 {
		t.Fatalf("after ClearAuth: %d users, want 0", n)
	}
}

func TestLoadRules(t *testing.T) {
	host := Firestore(t)
	project := ownProject(t)
	rules := filepath.Join(t.TempDir(), "deny.rules")
	os.WriteFile(rules, []byte(`rules_version = '2';
service cloud.firestore {
  match /databases/{database}/documents {
    match /{document=**} { allow read, write: if false; }
  }
}
`), 0o644)
	LoadRules(t, project, rules)
	doc := "http://" + host + "/v1/projects/" + project + "/databases/(default)/documents/things/one"
	status := func(auth string) int {
		req, _ := http.NewRequest("PATCH", doc, strings.NewReader(`{"fields":{}}`))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := status(""); got != http.StatusForbidden {
		t.Errorf("anonymous write under deny-all rules: %d, want 403", got)
	}
	if got := status("Bearer owner"); got != http.StatusOK {
		t.Errorf("owner write: %d, want 200 (owner bypasses rules)", got)
	}
	// Another project on the same emulator is untouched by these rules.
	other := "http://" + host + "/v1/projects/" + ownProject(t) + "/databases/(default)/documents/things/one"
	req, _ := http.NewRequest("PATCH", other, strings.NewReader(`{"fields":{}}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("write to a project without rules: %d, want 200", res.StatusCode)
	}
}
