package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"google.golang.org/api/idtoken"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/tasks"
)

// Production: Cloud Tasks calls TaskGrant with an OIDC token for the tasks
// service account, and only such a token gets through to the grant handler.
// functions/wiring.go builds the same with tasks.NewCloudTasks as the
// scheduler and idtoken.NewValidator as the validator.
func ExampleRequireOIDC() {
	const (
		audience = "https://taskgrant-abc123-nw.a.run.app"                // TASKS_AUDIENCE
		account  = "paymeter-tasks@demo-paymeter.iam.gserviceaccount.com" // TASKS_SERVICE_ACCOUNT
	)
	// Stands in for Google's validator: the email each token was issued to.
	validator := googleTokens{"cloud-tasks-token": account, "user-token": "ada@example.com"}
	grant := tasks.NewGrantHandler(mock.NewStore(), &mock.Scheduler{}, clock.Real{}, billing.DefaultCatalog().Free(), nil)
	h := tasks.RequireOIDC(audience, account, validator, nil)(grant)

	for _, token := range []string{"", "user-token", "cloud-tasks-token"} {
		r := httptest.NewRequest("POST", "/api/tasks/grant", strings.NewReader(`{"uid":"ada","period":1}`))
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Printf("%q: %d\n", token, w.Code)
	}
	// Output:
	// "": 401
	// "user-token": 401
	// "cloud-tasks-token": 200
}

// googleTokens is a tasks.TokenValidator for the example: each token is a
// valid Google-signed ID token for the email it maps to.
type googleTokens map[string]string

func (g googleTokens) Validate(_ context.Context, token, audience string) (*idtoken.Payload, error) {
	email, ok := g[token]
	if !ok {
		return nil, errors.New("idtoken: invalid token")
	}
	return &idtoken.Payload{Issuer: "https://accounts.google.com", Audience: audience, Expires: time.Now().Add(time.Hour).Unix(),
		Claims: map[string]any{"email": email, "email_verified": true}}, nil
}
