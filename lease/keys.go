package lease

import (
	"context"
	"errors"
	"time"

	"github.com/paymeter/paymeter/billing"
)

type keyEntry struct {
	uid   string
	keyID string
	err   error
	until time.Time
}

// keyID returns the id of the key hashed as hash, if it is cached.
func (m *Manager) keyID(hash string) string {
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	return m.keys[hash].keyID
}

// owner returns the uid that owns the key hashed as hash, from the cache
// when it is fresh.
func (m *Manager) owner(ctx context.Context, hash string, now time.Time) (keyEntry, error) {
	m.keyMu.Lock()
	e, ok := m.keys[hash]
	m.keyMu.Unlock()
	if ok && now.Before(e.until) {
		return e, e.err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	key, err := m.st.Key(ctx, hash)
	switch {
	case errors.Is(err, billing.ErrInvalidAPIKey):
		e = keyEntry{err: billing.ErrInvalidAPIKey, until: now.Add(m.cfg.NegativeKeyTTL)}
	case err != nil:
		return keyEntry{}, err
	case key.Revoked:
		e = keyEntry{err: billing.ErrInvalidAPIKey, until: now.Add(m.cfg.KeyTTL)}
	default:
		e = keyEntry{uid: key.UID, keyID: key.ID, until: now.Add(m.cfg.KeyTTL)}
	}
	m.keyMu.Lock()
	if len(m.keys) >= maxCachedKeys {
		clear(m.keys)
	}
	if old, ok := m.keys[hash]; !ok || old.err == nil || e.err != nil {
		m.keys[hash] = e // a revocation heard meanwhile wins
	}
	m.keyMu.Unlock()
	return e, e.err
}

// maxCachedKeys bounds the key cache; past it the cache starts again.
const maxCachedKeys = 100_000

// Revoke marks the key hashed as hash revoked in the cache: the instance
// that revoked it knows at once.
func (m *Manager) Revoke(hash string) { m.revoked(hash) }

// revoked marks the key hashed as hash revoked in the cache.
func (m *Manager) revoked(hash string) {
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	m.keys[hash] = keyEntry{err: billing.ErrInvalidAPIKey, until: m.clock.Now().Add(m.cfg.KeyTTL)}
}

// watch listens for revocations until ctx is done, so that a revoked key
// stops working on this instance about as soon as it is revoked, not when
// its cache entry expires. A listener that fails is started again a second
// later, from a KeyTTL before it failed: a revocation in the gap is heard
// then, and never later than the cache's own bound.
func (m *Manager) watch(ctx context.Context) {
	defer m.watching.Done()
	since := time.Now().Add(-m.cfg.KeyTTL) // revocations carry wall-clock times
	for {
		started := time.Now()
		err := m.st.WatchRevocations(ctx, since, m.revoked)
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("lease: revocation listener stopped; the key cache bounds revocation until it is back", "err", err)
		since = started.Add(-m.cfg.KeyTTL)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// Revoked reports whether the revocation listener (or a lookup) has seen
// the key hashed as hash revoked, for callers that keep their own key
// cache.
func (m *Manager) Revoked(hash string) bool {
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	e, ok := m.keys[hash]
	return ok && errors.Is(e.err, billing.ErrInvalidAPIKey) && m.clock.Now().Before(e.until)
}
