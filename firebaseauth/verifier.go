// Package firebaseauth verifies Firebase Auth ID tokens with the Firebase
// Admin SDK. With FIREBASE_AUTH_EMULATOR_HOST set, the SDK trusts the Auth
// emulator's unsigned tokens instead of Google's keys.
package firebaseauth

import (
	"context"
	"fmt"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/auth"
	"firebase.google.com/go/v4/errorutils"

	"github.com/paymeter/paymeter/billing"
)

// Verifier checks ID tokens for one Firebase project, revocation included.
type Verifier struct {
	client *auth.Client
}

var _ billing.TokenVerifier = (*Verifier)(nil)

// New returns a Verifier for projectID. Build it once per process.
func New(ctx context.Context, projectID string) (*Verifier, error) {
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: projectID})
	if err != nil {
		return nil, fmt.Errorf("firebase app: %w", err)
	}
	client, err := app.Auth(ctx)
	if err != nil {
		return nil, fmt.Errorf("firebase auth: %w", err)
	}
	return &Verifier{client: client}, nil
}

// Verify returns the identity in idToken, or billing.ErrUnauthenticated for
// a malformed, expired, revoked, disabled or foreign-project token. Other
// errors (the revocation check could not reach Firebase) are returned as is.
func (v *Verifier) Verify(ctx context.Context, idToken string) (billing.Identity, error) {
	tok, err := v.client.VerifyIDTokenAndCheckRevoked(ctx, idToken)
	if err != nil {
		if !isTransient(err) {
			return billing.Identity{}, billing.ErrUnauthenticated
		}
		return billing.Identity{}, fmt.Errorf("verify id token: %w", err)
	}
	id := billing.Identity{UID: tok.UID}
	if email, ok := tok.Claims["email"].(string); ok {
		id.Email = email
	}
	if verified, ok := tok.Claims["email_verified"].(bool); ok {
		id.EmailVerified = verified
	}
	return id, nil
}

// isTransient reports whether err came from failing to reach Firebase
// rather than from the token itself.
func isTransient(err error) bool {
	return auth.IsCertificateFetchFailed(err) || errorutils.IsInternal(err) || errorutils.IsUnavailable(err) ||
		errorutils.IsDeadlineExceeded(err) || errorutils.IsUnknown(err)
}
