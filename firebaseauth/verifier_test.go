package firebaseauth_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/firebaseauth"
	"github.com/paymeter/paymeter/internal/emulator"
)

// project is the Auth emulator's project: the one `make test` starts it with.
func project() string {
	if p := os.Getenv("GOOGLE_CLOUD_PROJECT"); p != "" {
		return p
	}
	return "demo-paymeter"
}

// unsigned makes a token the way the Auth emulator does (it signs nothing,
// and the Admin SDK checks no signature when FIREBASE_AUTH_EMULATOR_HOST is
// set), so claims can be set that the emulator would never issue.
func unsigned(claims map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "none", "typ": "JWT"}) + "." + enc(claims) + "."
}

// claimsFor are an ID token's claims for uid, issued now, expiring in ttl.
func claimsFor(uid string, ttl time.Duration) map[string]any {
	now := time.Now().Unix()
	return map[string]any{"iss": "https://securetoken.google.com/" + project(), "aud": project(), "sub": uid,
		"user_id": uid, "iat": now, "auth_time": now, "exp": time.Now().Add(ttl).Unix()}
}

func TestVerifyAgainstTheAuthEmulator(t *testing.T) {
	host := emulator.Auth(t)
	ctx := context.Background()
	v, err := firebaseauth.New(ctx, project())
	if err != nil {
		t.Fatal(err)
	}
	email := fmt.Sprintf("verify-%d@example.com", time.Now().UnixNano())
	uid, token := emulator.SignUp(t, email, "secret123")

	// A token made like the emulator's verifies until it expires (this makes
	// the "expired" case below fail for its expiry alone).
	if _, err := v.Verify(ctx, unsigned(claimsFor(uid, time.Hour))); err != nil {
		t.Fatalf("a fresh unsigned emulator token: %v", err)
	}
	id, err := v.Verify(ctx, token)
	if err != nil || id.UID != uid || id.Email != email {
		t.Fatalf("Verify(sign-up token) = %+v, %v; want uid %s", id, err, uid)
	}

	foreign, err := firebaseauth.New(ctx, "demo-someone-else")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(token, ".")
	for name, tc := range map[string]struct {
		v     *firebaseauth.Verifier
		token string
	}{
		"empty":           {v, ""},
		"garbage":         {v, "not-a-token"},
		"expired":         {v, unsigned(claimsFor(uid, -10*time.Minute))},
		"no subject":      {v, unsigned(map[string]any{"iss": "https://securetoken.google.com/" + project(), "aud": project(), "sub": "", "iat": time.Now().Unix(), "auth_time": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})},
		"truncated":       {v, parts[0] + "." + parts[1]},
		"foreign project": {foreign, token},
	} {
		if _, err := tc.v.Verify(ctx, tc.token); !errors.Is(err, billing.ErrUnauthenticated) {
			t.Errorf("%s: %v, want ErrUnauthenticated", name, err)
		}
	}

	// A disabled account's tokens stop working at once.
	body := fmt.Sprintf(`{"localId":%q,"disableUser":true}`, uid)
	req, _ := http.NewRequest("POST", "http://"+host+"/identitytoolkit.googleapis.com/v1/projects/"+project()+"/accounts:update", bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer owner")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("disable user: %v %v", res, err)
	}
	res.Body.Close()
	if _, err := v.Verify(ctx, token); !errors.Is(err, billing.ErrUnauthenticated) {
		t.Fatalf("a disabled user's token: %v, want ErrUnauthenticated", err)
	}
}
