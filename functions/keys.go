package functions

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
)

// The key check of every metered call, and the signed-in user's key
// options: edit and roll.

// admitKey is the key check of every metered call (charge calls it before
// the debit; reservations call it before holding credits): for one call of
// route at now, with nothing debited, the key must exist, be live and
// unexpired (ErrInvalidAPIKey, or a CodeInvalidAPIKey error that says it expired or
// was rolled), allow route (CodeRouteNotAllowed) and be within its rate
// (*billing.RateLimitedError, whose Retry-After httpjson.Fail sends). An
// empty route skips the scopes. It returns the key's hash and the key.
func (s *Server) admitKey(ctx context.Context, secret, route string, now time.Time) (string, billing.APIKey, error) {
	if !billing.WellFormedKey(secret) {
		return "", billing.APIKey{}, billing.ErrInvalidAPIKey
	}
	hash := billing.HashKey(secret)
	key, err := s.lookupKey(ctx, hash, now)
	if err != nil {
		return "", billing.APIKey{}, err
	}
	if err := key.Admit(route, now); err != nil {
		return "", billing.APIKey{}, err
	}
	if key.Limits.PerSecond > 0 {
		if err := s.limiter().Allow(ctx, hash, key.Limits, now); err != nil {
			return "", billing.APIKey{}, err
		}
	}
	return hash, key, nil
}

// RateLimiter holds keys to their perSecond and burst. Allow returns a
// *billing.RateLimitedError past them.
type RateLimiter interface {
	Allow(ctx context.Context, hash string, l billing.KeyLimits, now time.Time) error
}

// limiter is s.Limiter or, when none is set, one token bucket per key on
// this instance.
func (s *Server) limiter() RateLimiter {
	if s.Limiter != nil {
		return s.Limiter
	}
	s.localOnce.Do(func() { s.local = NewLocalLimiter() })
	return s.local
}

// LocalLimiter is one token bucket per key, on this instance only.
type LocalLimiter struct {
	mu      sync.Mutex
	buckets map[string]*billing.Bucket
}

// NewLocalLimiter returns an empty LocalLimiter.
func NewLocalLimiter() *LocalLimiter { return &LocalLimiter{buckets: map[string]*billing.Bucket{}} }

// Allow takes a token from the key's bucket, which fills at l.PerSecond up
// to l.Burst (a changed limit applies at once).
func (l *LocalLimiter) Allow(_ context.Context, hash string, lim billing.KeyLimits, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[hash]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			clear(l.buckets)
		}
		b = &billing.Bucket{}
		l.buckets[hash] = b
	}
	b.Rate, b.Burst = float64(lim.PerSecond), float64(lim.Burst)
	if wait := b.Take(now); wait > 0 {
		return &billing.RateLimitedError{RetryAfter: wait}
	}
	return nil
}

// maxBuckets bounds a limiter's buckets; past it they start again full.
const maxBuckets = 100_000

// lookupKey reads the key under hash: from Firestore on every call in txn
// mode (the debit's transaction reads nothing else of it); in lease mode
// through a per-instance cache trusted for KEY_CACHE_TTL, the bound on how
// long a revocation, roll or edit takes to reach an instance.
func (s *Server) lookupKey(ctx context.Context, hash string, now time.Time) (billing.APIKey, error) {
	// Only a lease manager (lease mode) caches keys: it also runs the
	// revocation listener that bounds the cache. Without one, every call
	// reads its key.
	if s.Leases == nil || s.Config.KeyCacheTTL <= 0 {
		return s.Keys.Key(ctx, hash)
	}
	if r, ok := s.Leases.(interface{ Revoked(hash string) bool }); ok && r.Revoked(hash) {
		return billing.APIKey{}, billing.ErrInvalidAPIKey // heard from the revocation listener: within a second
	}
	s.keyMu.Lock()
	e, ok := s.keyCache[hash]
	s.keyMu.Unlock()
	if ok && now.Before(e.until) {
		return e.key, e.err
	}
	key, err := s.Keys.Key(ctx, hash)
	if err != nil && !errors.Is(err, billing.ErrInvalidAPIKey) {
		return billing.APIKey{}, err
	}
	s.keyMu.Lock()
	if s.keyCache == nil || len(s.keyCache) >= maxBuckets {
		s.keyCache = map[string]cachedKey{}
	}
	s.keyCache[hash] = cachedKey{key: key, err: err, until: now.Add(s.Config.KeyCacheTTL)}
	s.keyMu.Unlock()
	return key, err
}

// forgetKey drops the key id from this instance's key caches once it was
// changed here, so that the change applies to this instance's next call
// (other instances: a revocation within about a second through the lease
// manager's listener, an edit or roll within KEY_CACHE_TTL); revoked also
// tells the lease manager.
func (s *Server) forgetKey(id string, revoked bool) {
	s.keyMu.Lock()
	var hashes []string
	for hash, e := range s.keyCache {
		if e.key.ID == id {
			hashes = append(hashes, hash)
			delete(s.keyCache, hash)
		}
	}
	s.keyMu.Unlock()
	if r, ok := s.Leases.(interface{ Revoke(hash string) }); ok && revoked {
		for _, hash := range hashes {
			r.Revoke(hash)
		}
	}
}

type cachedKey struct {
	key   billing.APIKey
	err   error
	until time.Time
}

// keyOptionsJSON is the options a create or an edit of a key sends.
type keyOptionsJSON struct {
	Name      *string              `json:"name"`
	ExpiresAt *string              `json:"expiresAt"` // RFC 3339; "" or null clears it
	Scopes    *[]string            `json:"scopes"`
	Limits    *billing.LimitsInput `json:"limits"`
}

// options reads o as billing.KeyOptions.
// decodeKeyOptions reads a key's options from the request body, strictly,
// and validates them.
func decodeKeyOptions(r *http.Request) (keyOptionsJSON, billing.KeyOptions, error) {
	var in keyOptionsJSON
	if err := httpjson.Decode(r, &in); err != nil {
		return in, billing.KeyOptions{}, err
	}
	opts, err := in.options()
	return in, opts, err
}

func (o keyOptionsJSON) options() (billing.KeyOptions, error) {
	opts := billing.KeyOptions{Name: o.Name, Scopes: o.Scopes, Limits: o.Limits}
	if o.ExpiresAt != nil {
		var at time.Time
		if *o.ExpiresAt != "" {
			var err error
			if at, err = time.Parse(time.RFC3339, *o.ExpiresAt); err != nil {
				return opts, billing.Errorf(billing.CodeBadRequest, "expiresAt must be an RFC 3339 time such as 2027-01-31T00:00:00Z")
			}
		}
		opts.ExpiresAt = &at
	}
	return opts, nil
}

func (s *Server) updateKey(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	_, opts, err := decodeKeyOptions(r)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	now := s.Clock.Now()
	id := r.PathValue("id")
	key, err := s.Keys.UpdateKey(r.Context(), a.UID, id, func(k *billing.APIKey) error {
		return opts.Apply(k, s.meterPaths(), now)
	})
	if err != nil {
		s.Fail(w, r, noSuchKey(err))
		return
	}
	s.forgetKey(id, false)
	s.Log.InfoContext(r.Context(), "api key changed", "uid", a.UID, "key", id)
	httpjson.Write(w, http.StatusOK, toKeyJSON(key, now))
}

func (s *Server) rollKey(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	var in struct {
		GraceSeconds *int64 `json:"graceSeconds"`
	}
	if err := httpjson.Decode(r, &in); err != nil {
		s.Fail(w, r, err)
		return
	}
	grace := int64(0)
	if in.GraceSeconds != nil {
		grace = *in.GraceSeconds
	}
	if grace < 0 || grace > int64(billing.MaxGrace.Seconds()) {
		s.Fail(w, r, billing.Errorf(billing.CodeBadRequest, "graceSeconds must be from 0 to %d", int64(billing.MaxGrace.Seconds())))
		return
	}
	now := s.Clock.Now()
	id := r.PathValue("id")
	var secret string
	var next billing.APIKey
	err := s.Keys.RollKey(r.Context(), a.UID, id, func(old *billing.APIKey) (string, billing.APIKey, error) {
		var hash string
		var err error
		secret, next, hash, err = old.Roll(s.Random, time.Duration(grace)*time.Second, now)
		return hash, next, err
	})
	if err != nil {
		s.Fail(w, r, noSuchKey(err))
		return
	}
	s.forgetKey(id, false)
	s.Log.InfoContext(r.Context(), "api key rolled", "uid", a.UID, "key", id, "next", next.ID, "prefix", next.Prefix, "graceSeconds", grace)
	out := toKeyJSON(next, now)
	out.Key = secret
	httpjson.Write(w, http.StatusCreated, out)
}

func noSuchKey(err error) error {
	if errors.Is(err, billing.ErrNotFound) {
		return billing.Errorf(billing.CodeNotFound, "you have no key with that id")
	}
	return err
}

type keyJSON struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Prefix     string            `json:"prefix"`
	Key        string            `json:"key,omitempty"` // the secret: on create and roll only
	CreatedAt  time.Time         `json:"createdAt"`
	LastUsedAt *time.Time        `json:"lastUsedAt"`
	ExpiresAt  *time.Time        `json:"expiresAt"`
	Expired    bool              `json:"expired"`
	Scopes     []string          `json:"scopes"`
	Limits     billing.KeyLimits `json:"limits"`
	RolledTo   string            `json:"rolledTo,omitempty"`
}

func toKeyJSON(k billing.APIKey, now time.Time) keyJSON {
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return keyJSON{ID: k.ID, Name: k.Name, Prefix: k.Prefix, CreatedAt: k.CreatedAt.UTC(), LastUsedAt: timeOrNil(k.LastUsedAt),
		ExpiresAt: timeOrNil(k.ExpiresAt), Expired: k.Expired(now), Scopes: scopes, Limits: k.Limits, RolledTo: k.RolledTo}
}
