// Package ratelimit holds API keys to their perSecond and burst across
// every instance that serves them. Each instance admits calls from a token
// bucket of its own, sized by the share of the key's rate it holds in a
// billing.RatePool (Firestore: apiKeys/{hash}/limits/rate): a claim, one
// transaction, when it first serves the key and about once a second while
// it does (in the background), never one per call. Shares add up to the
// key's burst and rate at most, and change hands empty, so all instances
// together admit at most burst + perSecond × t calls in any t seconds.
package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/paymeter/paymeter/billing"
)

// Pools keeps each key's RatePool. ClaimRate runs fn on the pool of the key
// hashed as hash in a transaction (fn may run more than once) and stores it.
type Pools interface {
	ClaimRate(ctx context.Context, hash string, fn func(*billing.RatePool)) error
}

// Config tunes a Limiter; zero fields take the defaults in brackets.
type Config struct {
	TTL     time.Duration // a share's lifetime without a claim [3s]
	Renew   time.Duration // how often a share in use is claimed again [1s]
	Margin  time.Duration // a share stops admitting this long before it ends [500ms]
	Timeout time.Duration // a claim's deadline [5s]
	Owner   string        // this instance's name in the pools [random]
}

// Limiter is the per-instance side. It is safe for concurrent use.
type Limiter struct {
	pools Pools
	clock billing.Clock
	cfg   Config
	log   *slog.Logger

	mu   sync.Mutex
	keys map[string]*share
}

type share struct {
	mu       sync.Mutex
	limits   billing.KeyLimits
	units    int64
	until    time.Time // admits until then
	claimed  time.Time
	bucket   billing.Bucket
	claiming bool
}

// New returns a Limiter on pools.
func New(pools Pools, clock billing.Clock, cfg Config, log *slog.Logger) *Limiter {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.TTL, 3*time.Second)
	def(&cfg.Renew, time.Second)
	def(&cfg.Margin, 500*time.Millisecond)
	def(&cfg.Timeout, 5*time.Second)
	if cfg.Owner == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		cfg.Owner = hex.EncodeToString(b)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Limiter{pools: pools, clock: clock, cfg: cfg, log: log, keys: map[string]*share{}}
}

// Allow admits one call of the key hashed as hash, whose limits are l, at
// now. It returns a *billing.RateLimitedError past this instance's share,
// and a CodeUnavailable error when the share could not be claimed.
func (lim *Limiter) Allow(ctx context.Context, hash string, l billing.KeyLimits, now time.Time) error {
	s := lim.share(hash)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limits != l || !now.Before(s.until) {
		// No share yet, or it ran out, or the key's limits changed: claim
		// before admitting.
		s.limits = l
		if err := lim.claim(ctx, hash, s, now); err != nil {
			return err
		}
	} else if now.Sub(s.claimed) >= lim.cfg.Renew && !s.claiming {
		s.claiming = true
		go lim.renew(hash, s, l)
	}
	if s.units == 0 || !now.Before(s.until) {
		return &billing.RateLimitedError{RetryAfter: lim.cfg.Renew}
	}
	if wait := s.bucket.Take(now); wait > 0 {
		return &billing.RateLimitedError{RetryAfter: wait}
	}
	return nil
}

func (lim *Limiter) share(hash string) *share {
	lim.mu.Lock()
	defer lim.mu.Unlock()
	s, ok := lim.keys[hash]
	if !ok {
		if len(lim.keys) >= maxKeys {
			clear(lim.keys)
		}
		s = &share{}
		lim.keys[hash] = s
	}
	return s
}

// maxKeys bounds the shares an instance keeps; past it they are claimed again.
const maxKeys = 100_000

// claim claims s's share at now; s.mu is held.
func (lim *Limiter) claim(ctx context.Context, hash string, s *share, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, lim.cfg.Timeout)
	defer cancel()
	l := s.limits
	var units int64
	var fresh float64
	err := lim.pools.ClaimRate(ctx, hash, func(p *billing.RatePool) {
		units, fresh = p.Claim(lim.cfg.Owner, l, now, lim.cfg.TTL)
	})
	if err != nil {
		return fmt.Errorf("claim rate of key: %w: %w", billing.ErrUnavailable, err)
	}
	lim.apply(s, l, units, fresh, now)
	return nil
}

// apply sets a claimed share on s; s.mu is held.
func (lim *Limiter) apply(s *share, l billing.KeyLimits, units int64, fresh float64, now time.Time) {
	rate := 0.0
	if l.Burst > 0 {
		rate = float64(l.PerSecond) * float64(units) / float64(l.Burst)
	}
	s.bucket.Refill(now, rate, float64(units), fresh)
	s.units, s.claimed = units, now
	s.until = now.Add(lim.cfg.TTL - lim.cfg.Margin)
}

// renew claims s's share again in the background, while calls go on being
// admitted from the share held.
func (lim *Limiter) renew(hash string, s *share, l billing.KeyLimits) {
	ctx, cancel := context.WithTimeout(context.Background(), lim.cfg.Timeout)
	defer cancel()
	var units int64
	var fresh float64
	now := lim.clock.Now()
	err := lim.pools.ClaimRate(ctx, hash, func(p *billing.RatePool) {
		units, fresh = p.Claim(lim.cfg.Owner, l, now, lim.cfg.TTL)
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claiming = false
	if err != nil {
		lim.log.Warn("rate share not renewed", "err", err)
		return // the share held runs out at s.until
	}
	if s.limits == l {
		lim.apply(s, l, units, fresh, now)
	}
}
