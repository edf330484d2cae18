package billing

import (
	"context"
	"time"
)

// The interfaces below are Paymeter's edges. Each has one production adapter
// (store/, firebaseauth/, tasks/, payments/); the test doubles shared by
// several packages' tests are in internal/mock, the clocks in internal/clock.

// Clock tells the time; tests and the dev server move it.
type Clock interface{ Now() time.Time }

// Identity is a signed-in user, from a verified ID token.
type Identity struct {
	UID           string
	Email         string
	EmailVerified bool
}

// TokenVerifier checks a Firebase ID token. It returns ErrUnauthenticated for
// a missing, malformed, expired, revoked or foreign token.
type TokenVerifier interface {
	Verify(ctx context.Context, idToken string) (Identity, error)
}

// Accounts loads and changes accounts. UpdateAccount runs fn in a
// transaction on a fresh copy of the account (fn may run more than once)
// and writes the account and its new ledger entries together, or nothing if
// fn fails. Both return ErrNotFound for an unknown uid.
type Accounts interface {
	Account(ctx context.Context, uid string) (*Account, error)
	// Provision returns the account of uid, creating it with NewAccount if it
	// does not exist; created reports whether this call created it.
	Provision(ctx context.Context, id Identity, now time.Time) (a *Account, created bool, err error)
	UpdateAccount(ctx context.Context, uid string, fn func(*Account) error) (*Account, error)
}

// History reads what an account did: its ledger and daily usage.
type History interface {
	Ledger(ctx context.Context, uid string, limit int) ([]Entry, error)
	Usage(ctx context.Context, uid string, from, to time.Time) ([]DayUsage, error)
}

// KeyStore keeps API keys by the hash of their secret.
type KeyStore interface {
	// CreateKey stores key under hash; ErrTooManyKeys when the owner holds MaxKeys.
	CreateKey(ctx context.Context, hash string, key APIKey) error
	// Keys lists the owner's unrevoked keys, newest first.
	Keys(ctx context.Context, uid string) ([]APIKey, error)
	// RevokeKey revokes the owner's key id; ErrNotFound if uid holds no such key.
	RevokeKey(ctx context.Context, uid, id string) error
	// Key returns the key under hash, revoked or not, or ErrInvalidAPIKey.
	Key(ctx context.Context, hash string) (APIKey, error)
	// UpdateKey runs fn on the owner's unrevoked key id in a transaction and
	// stores its name, expiry, scopes and limits, or nothing if fn fails;
	// ErrNotFound if uid holds no such key.
	UpdateKey(ctx context.Context, uid, id string, fn func(*APIKey) error) (APIKey, error)
	// RollKey runs roll on the owner's unrevoked key id and stores both the
	// old key it changed and the new key it returns under newHash, in one
	// transaction; ErrNotFound if uid holds no such key.
	RollKey(ctx context.Context, uid, id string, roll func(old *APIKey) (newHash string, next APIKey, err error)) error
}

// Meter debits the account that owns an API key. It returns the credits left,
// ErrInvalidAPIKey for an unknown or revoked key and ErrInsufficientCredits,
// debiting nothing, when the balance is below cost.
type Meter interface {
	DebitKey(ctx context.Context, hash string, cost int64, now time.Time) (remaining int64, err error)
}

// Scheduler enqueues Free grant tasks. Scheduling the same (UID, Period)
// twice makes one task; ScheduleGrant returns nil in that case.
type Scheduler interface {
	ScheduleGrant(ctx context.Context, t GrantTask) error
}

// Events applies billing events exactly once.
type Events interface {
	// ApplyEvent runs fn on the account of uid and records eventID in the same
	// transaction. It returns applied=false, running nothing, when eventID was
	// recorded before, and ErrNotFound for an unknown uid.
	ApplyEvent(ctx context.Context, eventID, uid string, fn func(*Account) error) (applied bool, err error)
	// AccountByCustomer finds the account linked to a payment provider
	// customer; ErrNotFound if none.
	AccountByCustomer(ctx context.Context, customerID string) (*Account, error)
}
