package billing

import "context"

// Payments is the payment provider: Stripe in production, the offline
// stand-in in the dev server. Calls that could duplicate work on a retry
// are idempotent.
type Payments interface {
	// EnsureCustomer returns the provider customer of the account uid,
	// creating it on the first call for that uid.
	EnsureCustomer(ctx context.Context, uid, email string) (customerID string, err error)
	// CheckoutSession starts a hosted checkout for one plan: a monthly
	// subscription or a one-off (instant) purchase. The account and plan go
	// in the metadata of the session and of what it creates.
	CheckoutSession(ctx context.Context, req CheckoutRequest) (Checkout, error)
	// CancelSubscriptions cancels, at once, every subscription of the
	// customer that has not ended, and returns their ids. Cancelling none is
	// not an error.
	CancelSubscriptions(ctx context.Context, customerID string) ([]string, error)
	// PortalSession returns the URL of the provider's customer portal.
	PortalSession(ctx context.Context, customerID string) (url string, err error)
	// Charge returns a charge, for events (disputes) that name only its id.
	// It returns ErrNotFound for an unknown charge.
	Charge(ctx context.Context, chargeID string) (Charge, error)
}

// CheckoutRequest is what to sell, to whom.
type CheckoutRequest struct {
	UID        string
	CustomerID string
	Plan       string
	Kind       string // PriceMonthly or PriceInstant
}

// Checkout is a started checkout: where to send the browser.
type Checkout struct {
	SessionID string `json:"sessionId"`
	URL       string `json:"url"`
}

// Charge is a payment as the provider recorded it, in the smallest currency
// unit.
type Charge struct {
	ID         string
	CustomerID string
	Payment    string // what the grant it paid for names: the payment intent id
	Amount     int64
	Refunded   int64
}

// WebhookVerifier checks the signature of a webhook delivery and decodes
// its event. It returns ErrInvalidSignature for a missing, malformed,
// foreign or stale signature, and for a body that is not an event.
type WebhookVerifier interface {
	VerifyEvent(payload []byte, signature string) (Event, error)
}

// ErrInvalidSignature answers a webhook delivery that cannot be trusted.
var ErrInvalidSignature = &Error{Code: CodeInvalidSignature, Message: "the webhook signature is missing, invalid or stale"}
