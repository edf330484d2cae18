package billing

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxKeys is how many unrevoked API keys one account may hold.
const MaxKeys = 10

// keysUsedKept bounds Account.KeysUsed: revoked keys' entries would
// otherwise pile up there.
const keysUsedKept = 4 * MaxKeys

// UsedKey records that the account's key id was used at now. Past
// keysUsedKept keys, the least recently used entries go.
func (a *Account) UsedKey(id string, now time.Time) {
	if id == "" {
		return
	}
	if a.KeysUsed == nil {
		a.KeysUsed = map[string]time.Time{}
	}
	a.KeysUsed[id] = now
	for len(a.KeysUsed) > keysUsedKept {
		oldest := id
		for k, t := range a.KeysUsed {
			if t.Before(a.KeysUsed[oldest]) {
				oldest = k
			}
		}
		delete(a.KeysUsed, oldest)
	}
}

// LastUsed returns when key was last used: its own lastUsedAt (written by
// earlier versions) or the account's record, whichever is later.
func (a *Account) LastUsed(key APIKey) time.Time {
	if t := a.KeysUsed[key.ID]; t.After(key.LastUsedAt) {
		return t
	}
	return key.LastUsedAt
}

// KeyPrefix starts every API key, so that leaked keys are easy to recognise
// (secret scanners) and garbage is refused before any lookup.
const KeyPrefix = "pmk_"

const (
	keyRandomBytes = 20 // 160 bits
	keyBodyLen     = 32 // base32 of 20 bytes, no padding
	shownPrefixLen = len(KeyPrefix) + 8
	maxKeyNameLen  = 64
)

var keyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// APIKey is what is stored of a key: never the secret, only its hash (the
// document id) and a short prefix to recognise it by.
type APIKey struct {
	ID         string    `firestore:"id"`
	UID        string    `firestore:"uid"`
	Name       string    `firestore:"name"`
	Prefix     string    `firestore:"prefix"`
	CreatedAt  time.Time `firestore:"createdAt"`
	LastUsedAt time.Time `firestore:"lastUsedAt"`
	Revoked    bool      `firestore:"revoked"`
	// ExpiresAt, when set, is when the key stops working (a roll sets it to
	// the end of the old key's grace).
	ExpiresAt time.Time `firestore:"expiresAt,omitempty"`
	// Scopes are the metered route prefixes the key may call; none: all.
	Scopes []string  `firestore:"scopes,omitempty"`
	Limits KeyLimits `firestore:"limits"`
	// RolledTo is the id of the key that replaced this one in a roll.
	RolledTo string `firestore:"rolledTo,omitempty"`
}

// KeyLimits are a key's own limits; a zero field is no limit.
type KeyLimits struct {
	PerSecond     int64 `firestore:"perSecond,omitempty" json:"perSecond,omitempty"`
	Burst         int64 `firestore:"burst,omitempty" json:"burst,omitempty"`
	CreditsPerDay int64 `firestore:"creditsPerDay,omitempty" json:"creditsPerDay,omitempty"`
}

// Bounds of the key options: past them a request is refused as absurd.
const (
	MaxPerSecond     = 10_000
	MaxBurst         = 100_000
	MaxCreditsPerDay = 1_000_000_000
	MaxScopes        = 20
	maxScopeLen      = 200
	MaxKeyLifetime   = 10 * 366 * 24 * time.Hour
	MaxGrace         = 7 * 24 * time.Hour
)

// KeyOptions are what a key's owner chooses beside its name, as a create
// or an edit sends them: a nil field is not given.
type KeyOptions struct {
	Name      *string
	ExpiresAt *time.Time // the zero time clears the expiry
	Scopes    *[]string  // empty: every route
	Limits    *LimitsInput
}

// LimitsInput is the limits as a request gives them: a nil field is no
// limit, a zero or negative one is refused.
type LimitsInput struct {
	PerSecond     *int64 `json:"perSecond"`
	Burst         *int64 `json:"burst"`
	CreditsPerDay *int64 `json:"creditsPerDay"`
}

// Apply validates o against routes (the metered routes a scope may name)
// and now, and sets it on k. It returns a CodeBadRequest error, leaving k
// unchanged, for a bad name, a past or absurd expiry, an unknown or
// malformed scope, or a zero, negative or absurd limit.
func (o KeyOptions) Apply(k *APIKey, routes []string, now time.Time) error {
	next := *k
	if o.Name != nil {
		if err := ValidKeyName(*o.Name); err != nil {
			return err
		}
		next.Name = strings.TrimSpace(*o.Name)
	}
	if o.ExpiresAt != nil {
		at := *o.ExpiresAt
		switch {
		case at.IsZero():
		case !at.After(now):
			return Errorf(CodeBadRequest, "expiresAt must be in the future")
		case at.Sub(now) > MaxKeyLifetime:
			return Errorf(CodeBadRequest, "expiresAt must be within 10 years")
		}
		next.ExpiresAt = at.UTC()
	}
	if o.Scopes != nil {
		scopes, err := validScopes(*o.Scopes, routes)
		if err != nil {
			return err
		}
		next.Scopes = scopes
	}
	if o.Limits != nil {
		l, err := o.Limits.valid()
		if err != nil {
			return err
		}
		next.Limits = l
	}
	*k = next
	return nil
}

func (in LimitsInput) valid() (KeyLimits, error) {
	var l KeyLimits
	field := func(name string, v *int64, hi int64, out *int64) error {
		if v == nil {
			return nil
		}
		if *v < 1 || *v > hi {
			return Errorf(CodeBadRequest, "limits.%s must be a whole number from 1 to %d, or left out for no limit", name, hi)
		}
		*out = *v
		return nil
	}
	if err := field("perSecond", in.PerSecond, MaxPerSecond, &l.PerSecond); err != nil {
		return l, err
	}
	if err := field("burst", in.Burst, MaxBurst, &l.Burst); err != nil {
		return l, err
	}
	if err := field("creditsPerDay", in.CreditsPerDay, MaxCreditsPerDay, &l.CreditsPerDay); err != nil {
		return l, err
	}
	if l.Burst > 0 && l.PerSecond == 0 {
		return l, Errorf(CodeBadRequest, "limits.burst needs limits.perSecond")
	}
	if l.PerSecond > 0 && l.Burst == 0 {
		l.Burst = l.PerSecond
	}
	return l, nil
}

// validScopes checks that each scope is a path prefix ("/v1/" or
// "/api/meter") that at least one metered route lies under, and returns
// them without duplicates.
func validScopes(scopes, routes []string) ([]string, error) {
	if len(scopes) > MaxScopes {
		return nil, Errorf(CodeBadRequest, "a key has at most %d scopes", MaxScopes)
	}
	var out []string
	seen := map[string]bool{}
	for _, sc := range scopes {
		if !strings.HasPrefix(sc, "/") || len(sc) > maxScopeLen || strings.ContainsAny(sc, " ?#\t\n") {
			return nil, Errorf(CodeBadRequest, "a scope is a route prefix such as /api/meter, got %q", sc)
		}
		known := false
		for _, r := range routes {
			if underScope(r, sc) || underScope(sc, r) {
				known = true
				break
			}
		}
		if !known {
			return nil, Errorf(CodeBadRequest, "no metered route lies under the scope %q", sc)
		}
		if !seen[sc] {
			seen[sc] = true
			out = append(out, sc)
		}
	}
	return out, nil
}

// underScope reports whether route lies under the prefix scope, at a path
// segment boundary: "/v1/" holds "/v1/search", "/api/meter" holds
// "/api/meter" and "/api/meter/x" but not "/api/meterx".
func underScope(route, scope string) bool {
	if !strings.HasPrefix(route, scope) {
		return false
	}
	return len(route) == len(scope) || strings.HasSuffix(scope, "/") || route[len(scope)] == '/'
}

// Allows reports whether the key may call route.
func (k APIKey) Allows(route string) bool {
	if len(k.Scopes) == 0 {
		return true
	}
	for _, sc := range k.Scopes {
		if underScope(route, sc) {
			return true
		}
	}
	return false
}

// Expired reports whether the key no longer works at now.
func (k APIKey) Expired(now time.Time) bool {
	return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt)
}

// Admit is the check of a key for one call of route at now, before any
// rate limit or debit: ErrInvalidAPIKey for a revoked key, a
// CodeInvalidAPIKey error that says so for an expired or rolled key, and a
// CodeRouteNotAllowed error outside its scopes. An empty route (a call that
// names none, such as a reservation) is not checked against the scopes.
func (k APIKey) Admit(route string, now time.Time) error {
	switch {
	case k.Revoked:
		return ErrInvalidAPIKey
	case k.Expired(now) && k.RolledTo != "":
		return Errorf(CodeInvalidAPIKey, "this API key was rolled and its grace period ended at %s; use the new key", k.ExpiresAt.UTC().Format(time.RFC3339))
	case k.Expired(now):
		return Errorf(CodeInvalidAPIKey, "this API key expired at %s", k.ExpiresAt.UTC().Format(time.RFC3339))
	case route != "" && !k.Allows(route):
		return Errorf(CodeRouteNotAllowed, "this API key may call only %s", strings.Join(k.Scopes, ", "))
	}
	return nil
}

// AdmitDay checks a capped key's day: a CodeKeyLimitReached error when
// usedToday credits plus cost would pass its creditsPerDay.
func (l KeyLimits) AdmitDay(usedToday, cost int64) error {
	if l.CreditsPerDay > 0 && usedToday+cost > l.CreditsPerDay {
		return Errorf(CodeKeyLimitReached, "this API key's daily cap of %d credits is reached (%d used today); it resets at 00:00 UTC", l.CreditsPerDay, usedToday)
	}
	return nil
}

// Roll makes the key that replaces k: a new secret with k's name, scopes
// and limits, and k changed to work until now+grace (at once: revoked).
// It returns a CodeBadRequest error for a negative grace or one over
// MaxGrace.
func (k *APIKey) Roll(random io.Reader, grace time.Duration, now time.Time) (secret string, next APIKey, hash string, err error) {
	if grace < 0 || grace > MaxGrace {
		return "", APIKey{}, "", Errorf(CodeBadRequest, "graceSeconds must be from 0 to %d", int(MaxGrace.Seconds()))
	}
	secret, next, hash, err = NewAPIKey(random, k.UID, k.Name, now)
	if err != nil {
		return "", APIKey{}, "", err
	}
	next.Scopes, next.Limits, next.ExpiresAt = k.Scopes, k.Limits, k.ExpiresAt
	k.RolledTo = next.ID
	end := now.Add(grace)
	if grace == 0 {
		k.Revoked = true
	}
	if k.ExpiresAt.IsZero() || end.Before(k.ExpiresAt) {
		k.ExpiresAt = end
	}
	return secret, next, hash, nil
}

// NewAPIKey makes a key for uid from 160 random bits read from random. It
// returns the secret, to be shown once, the key to store, and the hash under
// which to store it. The name must pass ValidKeyName.
func NewAPIKey(random io.Reader, uid, name string, now time.Time) (secret string, key APIKey, hash string, err error) {
	if err := ValidKeyName(name); err != nil {
		return "", APIKey{}, "", err
	}
	b := make([]byte, keyRandomBytes+8)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", APIKey{}, "", err
	}
	secret = KeyPrefix + keyEncoding.EncodeToString(b[:keyRandomBytes])
	key = APIKey{
		ID:        "key_" + hex.EncodeToString(b[keyRandomBytes:]),
		UID:       uid,
		Name:      strings.TrimSpace(name),
		Prefix:    secret[:shownPrefixLen],
		CreatedAt: now,
	}
	return secret, key, HashKey(secret), nil
}

// HashKey is the SHA-256 of a secret, in hex: the key's storage id.
func HashKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// WellFormedKey reports whether s has the shape of a Paymeter API key, so
// that garbage is refused without a lookup.
func WellFormedKey(s string) bool {
	if len(s) != len(KeyPrefix)+keyBodyLen || !strings.HasPrefix(s, KeyPrefix) {
		return false
	}
	for _, c := range s[len(KeyPrefix):] {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// ValidKeyName returns a CodeBadRequest error unless name is 1 to 64
// printable characters.
func ValidKeyName(name string) error {
	name = strings.TrimSpace(name)
	if name == "" || utf8.RuneCountInString(name) > maxKeyNameLen || !utf8.ValidString(name) {
		return Errorf(CodeBadRequest, "a key name is 1 to %d characters", maxKeyNameLen)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return Errorf(CodeBadRequest, "a key name holds printable characters only")
		}
	}
	return nil
}
