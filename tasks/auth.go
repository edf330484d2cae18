package tasks

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"google.golang.org/api/idtoken"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
)

// SecretHeader carries the shared secret of local task deliveries.
const SecretHeader = "X-Paymeter-Task-Secret"

// TokenValidator validates a Google-signed ID token for an audience;
// *idtoken.Validator is the production one.
type TokenValidator interface {
	Validate(ctx context.Context, token, audience string) (*idtoken.Payload, error)
}

var _ TokenValidator = (*idtoken.Validator)(nil)

// googleIssuer reports whether iss is the issuer of Google-signed ID tokens.
func googleIssuer(iss string) bool {
	return iss == "https://accounts.google.com" || iss == "accounts.google.com"
}

// SignatureRemoved is what Cloud Run puts in place of an ID token's
// signature when it has verified the token itself: a private service (one
// that admits only holders of roles/run.invoker) receives the caller's token
// with its signature replaced by this marker, so it cannot be verified again.
const SignatureRemoved = "SIGNATURE_REMOVED_BY_GOOGLE"

// RequireOIDC returns middleware that passes a request on only if it carries
// "Authorization: Bearer <token>" where the token is a Google ID token for
// audience, issued to serviceAccountEmail with a verified email, and not
// expired. A token whose signature is exactly SignatureRemoved was verified
// by Cloud Run in front of this private function, so its claims are checked
// without the signature; any other token is verified in full by v (Google's
// signature, audience, expiry) before its claims are checked. Anything else
// answers 401 unauthenticated. A nil log discards. It panics if audience or
// serviceAccountEmail is empty: a misconfiguration must not open the route.
func RequireOIDC(audience, serviceAccountEmail string, v TokenValidator, log *slog.Logger) func(http.Handler) http.Handler {
	if audience == "" || serviceAccountEmail == "" {
		panic("tasks: RequireOIDC needs an audience and a service account email")
	}
	log = orDiscard(log)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, ok := httpjson.Bearer(r)
			if !ok {
				refuse(w, r, log, "no bearer token")
				return
			}
			c, err := tokenClaims(r.Context(), token, audience, v)
			if err != nil {
				refuse(w, r, log, "invalid token", "err", err)
				return
			}
			switch {
			case !googleIssuer(c.iss):
				refuse(w, r, log, "token not issued by Google", "iss", c.iss)
			case c.aud != audience:
				refuse(w, r, log, "token for another audience", "aud", c.aud)
			case !time.Now().Before(time.Unix(c.exp, 0)):
				refuse(w, r, log, "token expired", "exp", c.exp)
			case !strings.EqualFold(c.email, serviceAccountEmail):
				refuse(w, r, log, "token for another account", "email", c.email)
			case !c.verified:
				refuse(w, r, log, "token email not verified", "email", c.email)
			default:
				next.ServeHTTP(w, r)
			}
		})
	}
}

// claims are the parts of an ID token that RequireOIDC decides on.
type claims struct {
	iss, aud, email string
	exp             int64
	verified        bool
}

// tokenClaims returns token's claims: read as they are when Cloud Run removed
// its signature, else after v verified it for audience. It returns an error
// for a token that is not a JWT or that v refuses.
func tokenClaims(ctx context.Context, token, audience string, v TokenValidator) (claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) == 3 && parts[2] == SignatureRemoved {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
		if err != nil {
			return claims{}, fmt.Errorf("decode payload: %w", err)
		}
		var p struct {
			Iss           string `json:"iss"`
			Aud           any    `json:"aud"`
			Exp           int64  `json:"exp"`
			Email         string `json:"email"`
			EmailVerified any    `json:"email_verified"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return claims{}, fmt.Errorf("decode payload: %w", err)
		}
		aud, _ := p.Aud.(string) // Google's ID tokens carry one audience, as a string
		return claims{iss: p.Iss, aud: aud, exp: p.Exp, email: p.Email, verified: verified(p.EmailVerified)}, nil
	}
	p, err := v.Validate(ctx, token, audience)
	if err != nil {
		return claims{}, err
	}
	email, _ := p.Claims["email"].(string)
	return claims{iss: p.Issuer, aud: p.Audience, exp: p.Expires, email: email, verified: verified(p.Claims["email_verified"])}, nil
}

func verified(v any) bool {
	b, ok := v.(bool)
	if !ok {
		s, _ := v.(string)
		return s == "true"
	}
	return b
}

// RequireSecret returns middleware for local work that passes a request on
// only if its X-Paymeter-Task-Secret header equals secret (compared in
// constant time), else answers 401 unauthenticated. It panics if secret is
// empty.
func RequireSecret(secret string) func(http.Handler) http.Handler {
	if secret == "" {
		panic("tasks: RequireSecret needs a secret")
	}
	want := sha256.Sum256([]byte(secret))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Hashing both sides makes the comparison constant-time whatever
			// the lengths.
			got := sha256.Sum256([]byte(r.Header.Get(SecretHeader)))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				httpjson.Fail(w, r, nil, errWrongSecret)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

var (
	errWrongSecret = billing.Errorf(billing.CodeUnauthenticated, "missing or wrong task secret")
	errNoOIDC      = billing.Errorf(billing.CodeUnauthenticated, "a valid OIDC token for the tasks service account is required")
)

func refuse(w http.ResponseWriter, r *http.Request, log *slog.Logger, reason string, args ...any) {
	log.Warn("task request refused: "+reason, args...)
	httpjson.Fail(w, r, nil, errNoOIDC)
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
