package tasks_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/idtoken"
	"google.golang.org/api/option"

	"github.com/paymeter/paymeter/tasks"
)

const (
	testAudience = "https://europe-west2-demo-paymeter.cloudfunctions.net/TaskGrant"
	testAccount  = "paymeter-tasks@demo-paymeter.iam.gserviceaccount.com"
)

// jwks serves the public half of key as Google's certificate endpoint
// does, to whatever URL the validator asks.
type jwks struct {
	kid string
	key *rsa.PrivateKey
}

func (j jwks) RoundTrip(*http.Request) (*http.Response, error) {
	b64 := base64.RawURLEncoding
	body, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kid": j.kid, "kty": "RSA", "alg": "RS256", "use": "sig",
		"n": b64.EncodeToString(j.key.N.Bytes()),
		"e": b64.EncodeToString(big.NewInt(int64(j.key.E)).Bytes()),
	}}})
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(body))}, nil
}

func mustKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signJWT signs claims with key under kid, RS256.
func signJWT(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	b64 := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	p, _ := json.Marshal(claims)
	signing := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + b64.EncodeToString(sig)
}

func googleClaims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": "https://accounts.google.com", "aud": testAudience, "sub": "1234567890",
		"email": testAccount, "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

func with(c map[string]any, k string, v any) map[string]any {
	c[k] = v
	return c
}

func TestRequireOIDC(t *testing.T) {
	key, other := mustKey(t), mustKey(t)
	v, err := idtoken.NewValidator(t.Context(), option.WithHTTPClient(&http.Client{Transport: jwks{kid: "k1", key: key}}))
	if err != nil {
		t.Fatal(err)
	}
	reached := false
	h := tasks.RequireOIDC(testAudience, testAccount, v, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = true
	}))
	tests := []struct {
		name   string
		header string
		want   int
	}{
		{"valid token", "Bearer " + signJWT(t, key, "k1", googleClaims()), 200},
		{"issuer without scheme", "Bearer " + signJWT(t, key, "k1", with(googleClaims(), "iss", "accounts.google.com")), 200},
		{"no token", "", 401},
		{"empty bearer", "Bearer ", 401},
		{"basic auth", "Basic dXNlcjpwYXNz", 401},
		{"garbage", "Bearer not.a.jwt", 401},
		{"wrong audience", "Bearer " + signJWT(t, key, "k1", with(googleClaims(), "aud", "https://example.com/other")), 401},
		{"wrong email", "Bearer " + signJWT(t, key, "k1", with(googleClaims(), "email", "intruder@demo-paymeter.iam.gserviceaccount.com")), 401},
		{"no email", "Bearer " + signJWT(t, key, "k1", with(googleClaims(), "email", nil)), 401},
		{"email not verified", "Bearer " + signJWT(t, key, "k1", with(googleClaims(), "email_verified", false)), 401},
		{"not issued by Google", "Bearer " + signJWT(t, key, "k1", with(googleClaims(), "iss", "https://evil.example.com")), 401},
		{"expired", "Bearer " + signJWT(t, key, "k1", with(googleClaims(), "exp", time.Now().Add(-time.Minute).Unix())), 401},
		{"bad signature", "Bearer " + signJWT(t, other, "k1", googleClaims()), 401},
		{"unknown key", "Bearer " + signJWT(t, key, "k2", googleClaims()), 401},
		{"tampered payload", "Bearer " + tamper(signJWT(t, key, "k1", googleClaims())), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reached = false
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"uid":"u","period":1}`))
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
			if reached != (tt.want == 200) {
				t.Fatalf("handler reached = %v with status %d", reached, w.Code)
			}
			if tt.want == 401 {
				wantErrorBody(t, w, "unauthenticated")
			}
		})
	}
}

// tamper re-encodes the payload with another email, keeping the signature.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	b64 := base64.RawURLEncoding
	p, _ := b64.DecodeString(parts[1])
	p = bytes.Replace(p, []byte("paymeter-tasks@"), []byte("paymeter-taskz@"), 1)
	return parts[0] + "." + b64.EncodeToString(p) + "." + parts[2]
}

func TestRequireOIDCPanicsWithoutAudienceOrEmail(t *testing.T) {
	for _, args := range [][2]string{{"", testAccount}, {testAudience, ""}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RequireOIDC(%q, %q) did not panic", args[0], args[1])
				}
			}()
			tasks.RequireOIDC(args[0], args[1], nil, nil)
		}()
	}
}

func TestRequireSecret(t *testing.T) {
	h := tasks.RequireSecret("s3cret")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, tt := range []struct {
		name, secret string
		set          bool
		want         int
	}{
		{"right secret", "s3cret", true, 204},
		{"no header", "", false, 401},
		{"empty", "", true, 401},
		{"wrong", "s3cres", true, 401},
		{"prefix", "s3cre", true, 401},
		{"longer", "s3cret!", true, 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/", nil)
			if tt.set {
				req.Header.Set(tasks.SecretHeader, tt.secret)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			if tt.want == 401 {
				wantErrorBody(t, w, "unauthenticated")
			}
		})
	}
}

// wantErrorBody checks the contract's error body with code.
func wantErrorBody(t *testing.T, w *httptest.ResponseRecorder, code string) {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string }
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != code || body.Error.Message == "" {
		t.Fatalf("error body %s, want code %q and a message (err %v)", w.Body, code, err)
	}
}

// stripped is token as Cloud Run passes it to a private service: the same
// header and payload, the signature replaced by SIGNATURE_REMOVED_BY_GOOGLE.
func stripped(token string) string {
	return token[:strings.LastIndex(token, ".")+1] + tasks.SignatureRemoved
}

// unsigned is a token of claims whose signature part is sig, signed by no one.
func unsigned(claims map[string]any, sig string) string {
	b64 := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": "k1"})
	p, _ := json.Marshal(claims)
	return b64.EncodeToString(h) + "." + b64.EncodeToString(p) + "." + sig
}

// TestRequireOIDCBehindCloudRun: a private function receives the caller's
// token with its signature removed by Cloud Run, which checked it; the claims
// still decide (issuer, audience, expiry, account, verified email), and only
// the exact marker skips the signature check.
func TestRequireOIDCBehindCloudRun(t *testing.T) {
	key := mustKey(t)
	v, err := idtoken.NewValidator(t.Context(), option.WithHTTPClient(&http.Client{Transport: jwks{kid: "k1", key: key}}))
	if err != nil {
		t.Fatal(err)
	}
	h := tasks.RequireOIDC(testAudience, testAccount, v, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tests := []struct {
		name  string
		token string
		want  int
	}{
		{"signature removed by Cloud Run", stripped(signJWT(t, key, "k1", googleClaims())), 200},
		{"marker on unsigned claims", unsigned(googleClaims(), tasks.SignatureRemoved), 200},
		{"wrong audience", unsigned(with(googleClaims(), "aud", "https://example.com/other"), tasks.SignatureRemoved), 401},
		{"audience list", unsigned(with(googleClaims(), "aud", []string{testAudience}), tasks.SignatureRemoved), 401},
		{"wrong email", unsigned(with(googleClaims(), "email", "intruder@demo-paymeter.iam.gserviceaccount.com"), tasks.SignatureRemoved), 401},
		{"email not verified", unsigned(with(googleClaims(), "email_verified", false), tasks.SignatureRemoved), 401},
		{"not issued by Google", unsigned(with(googleClaims(), "iss", "https://evil.example.com"), tasks.SignatureRemoved), 401},
		{"expired", unsigned(with(googleClaims(), "exp", time.Now().Add(-time.Minute).Unix()), tasks.SignatureRemoved), 401},
		{"no expiry", unsigned(with(googleClaims(), "exp", nil), tasks.SignatureRemoved), 401},
		{"marker in lower case", unsigned(googleClaims(), strings.ToLower(tasks.SignatureRemoved)), 401},
		{"marker with a suffix", unsigned(googleClaims(), tasks.SignatureRemoved+"x"), 401},
		{"empty signature", unsigned(googleClaims(), ""), 401},
		{"payload not JSON", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24." + tasks.SignatureRemoved, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"uid":"u","period":1}`))
			req.Header.Set("Authorization", "Bearer "+tt.token)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
		})
	}
}
