package lease

import (
	"context"
	"errors"
	"time"

	"github.com/paymeter/paymeter/billing"
)

type keyEntry struct {
	uid      string
	keyID    string
	err      error
	until    time.Time
	lastUsed time.Time // as stored, or as this instance last wrote it
}

// keyTouchInterval bounds how often a lease writes a key's lastUsedAt.
const keyTouchInterval = time.Minute

// touch returns hash if its key's lastUsedAt is older than
// keyTouchInterval, noting that it is being written, and "" otherwise.
func (m *Manager) touch(hash string, now time.Time) string {
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	e, ok := m.keys[hash]
	if !ok || now.Sub(e.lastUsed) < keyTouchInterval {
		return ""
	}
	e.lastUsed = now
	m.keys[hash] = e
	return hash
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
		e = keyEntry{uid: key.UID, keyID: key.ID, until: now.Add(m.cfg.KeyTTL), lastUsed: key.LastUsedAt}
	}
	m.keyMu.Lock()
	if len(m.keys) >= maxCachedKeys {
		clear(m.keys)
	}
	m.keys[hash] = e
	m.keyMu.Unlock()
	return e, e.err
}

// maxCachedKeys bounds the key cache; past it the cache starts again.
const maxCachedKeys = 100_000
