package tasks

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"

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

// RequireOIDC returns middleware that passes a request on only if it carries
// "Authorization: Bearer <token>" where the token is a valid Google-signed
// ID token (checked by v, for audience) issued by Google to
// serviceAccountEmail with a verified email. Anything else answers 401
// unauthenticated. A nil log discards. It panics if audience or
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
			p, err := v.Validate(r.Context(), token, audience)
			if err != nil {
				refuse(w, r, log, "invalid token", "err", err)
				return
			}
			email, _ := p.Claims["email"].(string)
			switch {
			case !googleIssuer(p.Issuer):
				refuse(w, r, log, "token not issued by Google", "iss", p.Issuer)
			case !strings.EqualFold(email, serviceAccountEmail):
				refuse(w, r, log, "token for another account", "email", email)
			case !verified(p.Claims["email_verified"]):
				refuse(w, r, log, "token email not verified", "email", email)
			default:
				next.ServeHTTP(w, r)
			}
		})
	}
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
