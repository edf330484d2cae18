// Package emulator connects tests to the Firebase emulators that
// `make test` starts. With CI=true a missing emulator fails the test;
// elsewhere it skips, naming the command that starts them.
package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

func need(t testing.TB, env, what string) string {
	t.Helper()
	host := os.Getenv(env)
	if host != "" {
		conn, err := net.DialTimeout("tcp", host, 2*time.Second)
		if err == nil {
			conn.Close()
			return host
		}
	}
	msg := fmt.Sprintf("the %s emulator is not reachable (%s=%q): run the tests with `make test`, which starts it", what, env, host)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Firestore returns the Firestore emulator's host:port.
func Firestore(t testing.TB) string {
	t.Helper()
	return need(t, "FIRESTORE_EMULATOR_HOST", "Firestore")
}

// Auth returns the Auth emulator's host:port.
func Auth(t testing.TB) string {
	t.Helper()
	return need(t, "FIREBASE_AUTH_EMULATOR_HOST", "Auth")
}

// SignUp creates a user with email and password in the Auth emulator and
// returns its uid and an ID token.
func SignUp(t testing.TB, email, password string) (uid, idToken string) {
	t.Helper()
	host := Auth(t)
	body, _ := json.Marshal(map[string]any{"email": email, "password": password, "returnSecureToken": true})
	resp, err := http.Post("http://"+host+"/identitytoolkit.googleapis.com/v1/accounts:signUp?key=fake-api-key",
		"application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		LocalID string `json:"localId"`
		IDToken string `json:"idToken"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("sign up %s: status %d, %v", email, resp.StatusCode, err)
	}
	return out.LocalID, out.IDToken
}
