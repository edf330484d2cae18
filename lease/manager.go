// Package lease is the metered hot path of one function instance: it serves
// metered calls from blocks of credits (billing.Lease) leased to the
// instance, instead of one Firestore transaction per call.
//
// A call is answered only once its use is durably recorded: the calls
// admitted since the last flush, on every lease the instance holds, are
// recorded by one commit (each lease document's running total and each
// account's usage of the day), then all of them are answered. One flush is
// in flight per instance; calls that arrive meanwhile join the next. So the
// commits per call fall as the load rises, and an instance killed at any
// moment has answered no call it did not record: when its lease expires,
// the next account transaction settles it with exactly the recorded use.
//
// Leases are returned when idle, exhausted, near expiry or on Close. Their
// size adapts: it doubles while the recent rate would spend a block within
// half a lease lifetime and halves when a block comes back mostly unused,
// between MinBlock and MaxBlock, and never exceeds half the balance last
// seen beside the leases (all of it once a single credit is left), so that
// another instance is not refused while this one holds the credits.
//
// Keys are cached per instance for KeyTTL: a revoked key keeps working on an
// instance that has it cached for at most that long.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/store"
)

// Store is what the manager needs of Firestore (store.Store).
type Store interface {
	// Key returns the key under hash, or billing.ErrInvalidAPIKey.
	Key(ctx context.Context, hash string) (billing.APIKey, error)
	// TakeLease takes a lease and returns it with the balance left beside it.
	TakeLease(ctx context.Context, r store.LeaseRequest, now time.Time) (billing.Lease, int64, error)
	// RecordLeaseUses records the leases' total use in one commit, all or
	// nothing; store.ErrLeaseGone if any was settled already.
	RecordLeaseUses(ctx context.Context, uses []store.LeaseUse, now time.Time) error
	// ReturnLease settles the leases with their recorded use.
	ReturnLease(ctx context.Context, uid string, now time.Time, ids ...string) (int64, error)
}

var _ Store = (*store.Store)(nil)

// Config tunes the manager; zero fields take the defaults in brackets.
type Config struct {
	TTL            time.Duration // lease lifetime, the longest a crashed instance strands credits [30s]
	Idle           time.Duration // a lease unused this long goes back [3s]
	MinBlock       int64         // the first block of an account [10]
	MaxBlock       int64         // the largest block [1000]
	KeyTTL         time.Duration // how long a key lookup is trusted: the revocation delay [10s]
	NegativeKeyTTL time.Duration // how long an unknown key stays unknown [1s]
	Owner          string        // this instance's name in lease ids [random]
	Timeout        time.Duration // the deadline of each Firestore operation [10s]
	// Linger is how long a flush waits for the calls that usually share it
	// (as many as the largest recent flush) before it commits [5ms]; a lone
	// client's calls never wait. Negative: never wait.
	Linger time.Duration
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.TTL, 30*time.Second)
	def(&c.Idle, 3*time.Second)
	def(&c.KeyTTL, 10*time.Second)
	def(&c.NegativeKeyTTL, time.Second)
	def(&c.Timeout, 10*time.Second)
	if c.Linger == 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.MinBlock <= 0 {
		c.MinBlock = 10
	}
	if c.MaxBlock < c.MinBlock {
		c.MaxBlock = max(1000, c.MinBlock)
	}
	if c.Owner == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		c.Owner = hex.EncodeToString(b)
	}
	return c
}

// errClosed answers calls that arrive after Close.
var errClosed = fmt.Errorf("lease manager closed: %w", billing.ErrUnavailable)

// errNotRecorded answers calls whose use could not be recorded.
var errNotRecorded = fmt.Errorf("use not recorded: %w", billing.ErrUnavailable)

// Manager serves billing.Meter from leases. It is safe for concurrent use.
type Manager struct {
	st     Store
	cfg    Config
	blocks blockSizer
	clock  billing.Clock
	log    *slog.Logger

	keyMu sync.Mutex
	keys  map[string]keyEntry

	mu       sync.Mutex
	accounts map[string]*account
	closed   atomic.Bool
	seq      atomic.Int64
	work     sync.WaitGroup // flushes and returns in flight
	stop     chan struct{}
	janitor  sync.WaitGroup

	// The flush: one commit in flight per instance records the calls of
	// every lease admitted since the last.
	fmu      sync.Mutex
	dirty    []queued // leases with calls to record
	flushing bool
	pending  atomic.Int64  // calls admitted and not yet in a flush
	more     chan struct{} // a call was admitted
	peak     int64         // the largest recent flush, decaying; the flusher's own
}

type queued struct {
	a *account
	h *held
}

var _ billing.Meter = (*Manager)(nil)

// account is one account's leases on this instance.
type account struct {
	uid string

	mu       sync.Mutex
	cur      *held // the lease calls are served from, nil between leases
	taking   *take // the lease being taken, nil if none
	block    int64
	balance  int64 // the account's balance beside its leases, as last seen
	seen     bool  // whether balance has been seen
	lastUsed time.Time
	spent    []string // leases spent to the last credit, settled with the next return
}

type take struct {
	done chan struct{}
	err  error
}

// wait returns the take's error once it is done, or ctx's error as soon as
// ctx is done.
func (t *take) wait(ctx context.Context) error {
	select {
	case <-t.done:
		return t.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// held is a lease on this instance.
type held struct {
	lease       billing.Lease
	usableUntil time.Time
	used        int64 // credits of calls admitted
	recorded    int64 // credits of calls durably recorded
	pending     []*call
	queued      bool // in Manager.dirty
	inFlush     bool // its calls are in the commit in flight
	retired     bool // no longer admits calls; returned after its last flush
	returned    bool
	back        chan struct{} // closed once its unused credits are back (or it is left to expire)
	lastUse     time.Time
}

type call struct {
	remaining int64
	cost      int64
	route     string // counted in the usage under it; "" none
	done      chan error
}

// New returns a manager on st and starts its janitor, which returns idle
// leases; call Close to return every lease and stop it.
func New(st Store, clock billing.Clock, cfg Config, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	m := &Manager{st: st, cfg: cfg, clock: clock, log: log, keys: map[string]keyEntry{}, accounts: map[string]*account{},
		stop: make(chan struct{}), more: make(chan struct{}, 1), blocks: blockSizer{min: cfg.MinBlock, max: cfg.MaxBlock, ttl: cfg.TTL}}
	m.janitor.Add(1)
	go m.sweep()
	return m
}

// DebitKey debits cost credits from the account that owns the key hashed as
// hash, from this instance's lease, and returns once the use is durably
// recorded. remaining is the account's balance as this instance knows it:
// what its lease has left plus the balance beside every lease when it took
// it. It returns billing.ErrInvalidAPIKey for an unknown or revoked key,
// billing.ErrInsufficientCredits, debiting nothing, when no credits are
// left or when the lease and the balance beside it cannot cover cost (at
// once, without taking another lease), ctx's error as soon as ctx is done
// while it waits for a lease, and a CodeUnavailable error when the use could
// not be recorded or the manager is closed.
func (m *Manager) DebitKey(ctx context.Context, hash string, cost int64, now time.Time) (int64, error) {
	d, err := m.Charge(ctx, hash, cost, "", now)
	return d.Remaining, err
}

// Charge is DebitKey for a call to route (its usage is counted under it; ""
// counts none), returning the charge: the account, the key's id and the
// grants of the lease the credits came from, for a refund.
func (m *Manager) Charge(ctx context.Context, hash string, cost int64, route string, now time.Time) (billing.Debited, error) {
	if cost <= 0 {
		return billing.Debited{}, billing.Errorf(billing.CodeBadRequest, "a debit must be positive, got %d", cost)
	}
	key, err := m.owner(ctx, hash, now)
	if err != nil {
		return billing.Debited{}, err
	}
	uid := key.uid
	a, err := m.account(uid)
	if err != nil {
		return billing.Debited{}, err
	}
	charged := func(remaining int64, l billing.Lease) billing.Debited {
		return billing.Debited{UID: uid, KeyID: key.keyID, Route: route, Cost: cost, Remaining: remaining, At: now, Taken: l.Taken}
	}
	for first := true; ; first = false {
		if !first {
			now = m.clock.Now() // it waited for a lease
		}
		if err := ctx.Err(); err != nil {
			return billing.Debited{}, err
		}
		a.mu.Lock()
		h := a.cur
		if h != nil && !now.Before(h.usableUntil) {
			m.retire(a, h)
			h = nil
		}
		if h != nil && h.lease.Amount-h.used >= cost {
			c := m.admit(a, h, cost, route, now)
			l := h.lease
			a.mu.Unlock()
			select {
			case err := <-c.done:
				if err != nil {
					return billing.Debited{}, err
				}
				return charged(c.remaining, l), nil
			case <-ctx.Done():
				return billing.Debited{}, ctx.Err() // its use may still be recorded: never an answer without a record
			}
		}
		var back <-chan struct{} // the credits of the lease retired here
		if h != nil {
			left := h.lease.Amount - h.used
			if a.seen && left+a.balance < cost {
				// Even with this lease back, the account cannot pay: keep
				// the lease for cheaper calls and refuse this one now.
				a.mu.Unlock()
				return billing.Debited{}, billing.ErrInsufficientCredits
			}
			m.retire(a, h) // too little left for this call
			if left > 0 {
				back = h.back // the next take needs them
			}
		}
		if t := a.taking; t != nil {
			a.mu.Unlock()
			if err := t.wait(ctx); err != nil {
				return billing.Debited{}, err
			}
			continue
		}
		t := &take{done: make(chan struct{})}
		a.taking = t
		want := a.want(cost)
		a.mu.Unlock()
		// The take goes on if this caller gives up: the calls waiting on it
		// still need the lease.
		m.work.Add(1)
		go func() {
			defer m.work.Done()
			if back != nil {
				select {
				case <-back:
				case <-time.After(m.cfg.Timeout):
				}
			}
			t.err = m.takeLease(a, hash, want, now)
			close(t.done)
		}()
		if err := t.wait(ctx); err != nil {
			return billing.Debited{}, err
		}
	}
}

// admit counts a call against h and queues it for the next flush, starting
// one if none is in flight. a.mu is held.
func (m *Manager) admit(a *account, h *held, cost int64, route string, now time.Time) *call {
	h.used += cost
	h.lastUse, a.lastUsed = now, now
	c := &call{remaining: a.balance + h.lease.Amount - h.used, cost: cost, route: route, done: make(chan error, 1)}
	h.pending = append(h.pending, c)
	m.pending.Add(1)
	if !h.queued {
		h.queued = true
		m.fmu.Lock()
		m.dirty = append(m.dirty, queued{a, h})
		start := !m.flushing
		if start {
			m.flushing = true
			m.work.Add(1)
		}
		m.fmu.Unlock()
		if start {
			go m.flush()
		}
	}
	select {
	case m.more <- struct{}{}:
	default:
	}
	return c
}

// takeLease takes a block of want credits for a and makes it current.
func (m *Manager) takeLease(a *account, hash string, want int64, now time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
	defer cancel()
	id := m.cfg.Owner + "-" + strconv.FormatInt(m.seq.Add(1), 36)
	l, balance, err := m.st.TakeLease(ctx, store.LeaseRequest{UID: a.uid, ID: id, Owner: m.cfg.Owner,
		Want: want, TTL: m.cfg.TTL, TouchKey: m.touch(hash, now)}, now)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.taking = nil
	if err == nil || errors.Is(err, billing.ErrInsufficientCredits) {
		a.balance, a.seen = balance, true
	}
	if err != nil {
		if errors.Is(err, billing.ErrNotFound) {
			return billing.ErrInvalidAPIKey // the owner is gone
		}
		if billing.ErrorCode(err) == billing.CodeInternal {
			return fmt.Errorf("lease: %w", err)
		}
		return err
	}
	// Stop admitting calls a margin before expiry, so that the last flush
	// lands before another instance may settle the lease.
	usable := l.ExpiresAt.Add(-min(m.cfg.TTL/4, 5*time.Second))
	if !usable.After(now) {
		usable = l.ExpiresAt
	}
	a.cur = &held{lease: l, usableUntil: usable, lastUse: now, back: make(chan struct{})}
	if m.closed.Load() {
		m.retire(a, a.cur) // Close came while it was being taken
		return errClosed
	}
	return nil
}

func (m *Manager) account(uid string) (*account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return nil, errClosed
	}
	a, ok := m.accounts[uid]
	if !ok {
		a = &account{uid: uid, block: m.cfg.MinBlock}
		m.accounts[uid] = a
	}
	return a, nil
}

// Close stops admitting calls, waits for the calls admitted to be recorded
// and answered, and returns every lease. It returns ctx's error if that
// takes longer than ctx allows; leases not returned then expire.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed.Swap(true) {
		m.mu.Unlock()
		return nil
	}
	close(m.stop)
	for _, a := range m.accounts {
		a.mu.Lock()
		if a.cur != nil {
			m.retire(a, a.cur)
		}
		a.mu.Unlock()
	}
	m.mu.Unlock()
	m.janitor.Wait()
	done := make(chan struct{})
	go func() {
		m.work.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("lease: close: %w", ctx.Err())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.accounts {
		a.mu.Lock()
		ids := a.spent
		a.spent = nil
		a.mu.Unlock()
		if len(ids) > 0 {
			m.settle(a, ids)
		}
	}
	return ctx.Err()
}
