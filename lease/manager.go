// Package lease is the metered hot path of one function instance: it serves
// metered calls from blocks of credits (billing.Lease) leased to the
// instance, instead of one Firestore transaction per call.
//
// A call is answered only once its use is durably recorded: the calls
// admitted since the last flush, on every lease the instance holds, are
// recorded by one write of the instance's journal document (each lease's
// total and its use per day, store.WriteJournal), then all of them are
// answered. One flush is in flight per instance; calls that arrive
// meanwhile join the next. So the writes per call fall as the load rises,
// whatever the number of accounts. Each write also renews every lease the
// journal lists (store.JournalWrite.AliveUntil, billing.Lease.Renewed), so a
// busy instance keeps its leases with no write on their accounts. An
// instance killed or frozen at any moment has answered no call it did not
// record: LEASE_TTL after its last write, the next account transaction
// settles its leases with exactly the use its journal records, and fences
// the journal so that a write landing later (a frozen instance woken up)
// fails and its calls are refused, not served for free.
//
// A call answered 503 because its flush could not be recorded is not
// charged: its credits leave the lease's total, which the next write
// rewrites, and the lease is not returned before that write has landed.
//
// The request path does the work: flushes run while their calls wait; a
// lease transaction is waited for by the calls that need it, or, when the
// next lease is taken ahead (a grown block with a fifth left), by the call
// that started it; leases idle for Idle are found on the request path and
// settled by the account's next lease transaction or returned. Close (on
// SIGTERM) returns every lease. Lease sizes adapt: an account's first
// block on an instance is FirstBlock (100), at most half its balance; then
// a block doubles while the recent rate would spend it within Idle and
// halves when it comes back mostly unused, between MinBlock and MaxBlock,
// and never exceeds half the balance last seen beside the leases (all of
// it once a single credit is left); a lease transaction that is short
// takes back other instances' leases unused for a few seconds
// (store.TakeLease), so that an account is not refused here while its
// credits idle there.
//
// Keys are cached per instance for KeyTTL; a revocation reaches the cache
// within about a second through a Firestore listener (Store.WatchRevocations)
// while it runs, and within KeyTTL when it does not.
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

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/store"
)

// Store is what the manager needs of Firestore (store.Store).
type Store interface {
	// Key returns the key under hash, or billing.ErrInvalidAPIKey.
	Key(ctx context.Context, hash string) (billing.APIKey, error)
	// TakeLease settles r.Settle, takes a lease and returns it with the
	// balance left beside the account's leases.
	TakeLease(ctx context.Context, r store.LeaseRequest, now time.Time) (store.Taken, error)
	// WriteJournal writes one flush; store.ErrJournalMoved if the journal
	// changed since After.
	WriteJournal(ctx context.Context, w store.JournalWrite) (time.Time, error)
	// ReadJournal reads the instance's journal.
	ReadJournal(ctx context.Context, owner string) (store.Journal, error)
	// ReturnLease settles the leases with the use given.
	ReturnLease(ctx context.Context, uid string, now time.Time, uses ...store.LeaseUse) (int64, error)
	// WatchRevocations calls revoked for each key revoked since since.
	WatchRevocations(ctx context.Context, since time.Time, revoked func(hash string)) error
}

var _ Store = (*store.Store)(nil)

// Config tunes the manager; zero fields take the defaults in brackets.
type Config struct {
	TTL      time.Duration // lease lifetime, the longest a crashed instance strands credits [30s]
	Idle     time.Duration // a lease unused this long goes back at the next call on the instance [5m]
	MinBlock int64         // the smallest block [10]
	MaxBlock int64         // the largest block [1000]
	// FirstBlock is an account's first block on the instance, before its
	// pace is known; the store leases at most half the balance for it
	// [100, or MinBlock if larger, at most MaxBlock].
	FirstBlock     int64
	KeyTTL         time.Duration // how long a key lookup is trusted without the revocation listener [60s]
	NegativeKeyTTL time.Duration // how long an unknown key stays unknown [1s]
	Owner          string        // this instance's name: its journal and lease ids [random]
	Timeout        time.Duration // the deadline of each Firestore operation [10s]
	// Linger is how long a flush waits for the calls that usually share it
	// (as many as the largest recent flush) before it commits [5ms]; a lone
	// client's calls never wait. Negative: never wait.
	Linger time.Duration
	// NoWatch turns the revocation listener off (tests of the TTL bound).
	NoWatch bool
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.TTL, 30*time.Second)
	def(&c.Idle, 5*time.Minute)
	def(&c.KeyTTL, time.Minute)
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
	if c.FirstBlock <= 0 {
		c.FirstBlock = max(c.MinBlock, 100)
	}
	c.FirstBlock = min(max(c.FirstBlock, c.MinBlock), c.MaxBlock)
	if c.Owner == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		c.Owner = hex.EncodeToString(b)
	}
	return c
}

// errClosed answers calls that arrive after Close.
var errClosed = fmt.Errorf("lease manager closed: %w", billing.ErrUnavailable)

// errNotRecorded answers calls whose use could not be recorded: they are
// not charged.
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

	mu        sync.Mutex
	accounts  map[string]*account
	closed    atomic.Bool
	seq       atomic.Int64
	work      sync.WaitGroup // flushes and returns in flight
	lastSweep atomic.Int64   // unix nanoseconds of the last idle sweep
	// returning bounds the return transactions in flight (returnsAtOnce;
	// closing, closingAtOnce, once Close has begun): a sweep that finds a
	// thousand idle accounts, or Close, must not start a thousand
	// transactions at once.
	returning, closing chan struct{}
	// aliveUntil (unix nanoseconds) is what the last journal write that
	// landed promised: the instance's listed leases are its until then.
	aliveUntil atomic.Int64
	stopWatch  context.CancelFunc
	watching   sync.WaitGroup

	// The flush: one journal write in flight per instance records the calls
	// of every lease admitted since the last.
	fmu      sync.Mutex
	dirty    []queued // leases with calls to record
	stale    []queued // retired leases whose last write failed, rewritten with the next flush
	flushing bool
	forget   []string      // own leases settled, whose journal entries can go
	pending  atomic.Int64  // calls admitted and not yet in a flush
	more     chan struct{} // a call was admitted
	peak     int64         // the most calls recently unanswered at once, decaying; the flusher's own
	// unanswered is the calls admitted and not yet answered (pending and
	// in the write in flight), and crowd the most of them at once since
	// the last flush: what the next flush may wait for (linger).
	unanswered, crowd atomic.Int64
	j                 journalState // the flusher's own
}

// journalState is what the flusher knows of the instance's journal.
type journalState struct {
	known   bool      // whether after and seq are the journal's
	after   time.Time // its update time
	seq     int64     // the seq of the last write seen
	lastTry int64     // the largest seq tried
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
	others   int64 // the credits out on the account's other leases when the current one was taken
	seen     bool  // whether balance has been seen
	refused  bool  // whether the store refused the last lease (and so wrote the exhausted notice)
	lastUsed time.Time
	done     []store.LeaseUse // retired leases recorded in full, settled with the next lease transaction
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
	usableUntil time.Time      // before renewals (usable)
	listed      bool           // in a journal write that landed: renewed by the next ones
	used        int64          // credits of calls admitted (and not refused)
	days        usage          // used, per usage document and day
	routes      routeUsage     // used by calls on a route, per usage document, day and route
	recorded    store.LeaseUse // what the journal holds, as last confirmed
	pending     []*call
	queued      bool // in Manager.dirty
	inFlush     bool // its calls are in the write in flight
	stale       bool // the journal may hold more than recorded (a write failed): rewrite before settling
	gone        bool // settled by another transaction (its journal entry was fenced)
	retired     bool // no longer admits calls; settled after its last flush
	returned    bool
	deferred    bool          // settled with the account's next lease transaction, whatever it has left
	back        chan struct{} // closed once its unused credits are back (or it is left to expire)
	lastUse     time.Time
}

type call struct {
	cost       int64
	month, day string
	route      string // counted in the usage under it; "" none
	remaining  int64
	done       chan struct{} // closed once err is known
	err        error         // nil once recorded, errNotRecorded if not
}

// answer tells the call whether its use was recorded (err nil).
func (c *call) answer(err error) {
	c.err = err
	close(c.done)
}

// usage is credits per month document and day (billing.UsageKeys).
type usage map[string]map[string]int64

func (u usage) add(month, day string, n int64) {
	if u[month] == nil {
		u[month] = map[string]int64{}
	}
	u[month][day] += n
}

func (u usage) clone() map[string]map[string]int64 {
	out := make(map[string]map[string]int64, len(u))
	for m, days := range u {
		out[m] = make(map[string]int64, len(days))
		for d, n := range days {
			if n != 0 {
				out[m][d] = n
			}
		}
	}
	return out
}

// routeUsage is credits per month document, day and route.
type routeUsage map[string]map[string]map[string]int64

func (u routeUsage) add(month, day, route string, n int64) {
	if route == "" {
		return
	}
	if u[month] == nil {
		u[month] = map[string]map[string]int64{}
	}
	if u[month][day] == nil {
		u[month][day] = map[string]int64{}
	}
	u[month][day][route] += n
}

func (u routeUsage) clone() map[string]map[string]map[string]int64 {
	if len(u) == 0 {
		return nil
	}
	out := make(map[string]map[string]map[string]int64, len(u))
	for m, days := range u {
		out[m] = map[string]map[string]int64{}
		for d, rs := range days {
			out[m][d] = map[string]int64{}
			for r, n := range rs {
				if n != 0 {
					out[m][d][r] = n
				}
			}
		}
	}
	return out
}

// New returns a manager on st and starts its revocation listener (unless
// cfg.NoWatch); call Close to return every lease and stop it.
func New(st Store, clock billing.Clock, cfg Config, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	m := &Manager{st: st, cfg: cfg, clock: clock, log: log, keys: map[string]keyEntry{}, accounts: map[string]*account{},
		more: make(chan struct{}, 1), returning: make(chan struct{}, returnsAtOnce),
		closing: make(chan struct{}, closingAtOnce), blocks: blockSizer{min: cfg.MinBlock, max: cfg.MaxBlock, horizon: cfg.Idle},
		j: journalState{known: true}}
	m.lastSweep.Store(clock.Now().UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	m.stopWatch = cancel
	if !cfg.NoWatch {
		m.watching.Add(1)
		go m.watch(ctx)
	}
	return m
}

// DebitKey debits cost credits from the account that owns the key hashed as
// hash, from this instance's lease, and returns once the use is durably
// recorded. remaining is the account's balance minus the use recorded, as
// this instance knows it (it counts other instances' leases as unspent). It
// returns billing.ErrInvalidAPIKey for an unknown or revoked key,
// billing.ErrInsufficientCredits, debiting nothing, when no credits are
// left or when the lease and the balance beside it cannot cover cost (at
// once, without taking another lease), ctx's error as soon as ctx is done
// while it waits for a lease, and a CodeUnavailable error, charging
// nothing, when the use could not be recorded or the manager is closed.
func (m *Manager) DebitKey(ctx context.Context, hash string, cost int64, now time.Time) (int64, error) {
	d, err := m.Charge(ctx, hash, cost, "", now)
	return d.Remaining, err
}

// Charge is DebitKey for a call to route (its usage is counted under it; ""
// counts none), returning the charge: the account, the key's id and the
// grants of the lease the credits came from, for a refund. It is Admit,
// then Wait.
func (m *Manager) Charge(ctx context.Context, hash string, cost int64, route string, now time.Time) (billing.Debited, error) {
	p, err := m.Admit(ctx, hash, cost, route, now)
	if err != nil {
		return billing.Debited{}, err
	}
	if err := p.Wait(ctx); err != nil {
		return billing.Debited{}, err
	}
	return p.Debited, nil
}

// Pending is a call admitted into a lease whose use is being recorded.
type Pending struct {
	Debited billing.Debited // the charge, once Wait returns nil
	c       *call
	// ahead is the next lease, being taken ahead because of this call: the
	// call waits for it too, so that the transaction runs while a request
	// is in flight (Cloud Run gives an instance CPU only then; frozen inside
	// a transaction, it would hold the account's lock until Firestore
	// expires it).
	ahead *take
}

// Wait returns nil once the call's use is durably recorded: it is charged
// and may be answered. It returns a CodeUnavailable error, charging
// nothing, when the use could not be recorded, and ctx's error as soon as
// ctx is done (the use may still be recorded: never answer the call then).
func (p *Pending) Wait(ctx context.Context) error {
	select {
	case <-p.c.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if p.c.err == nil && p.ahead != nil {
		_ = p.ahead.wait(ctx) // its failure is the next call's concern
	}
	return p.c.err
}

// Admit is Charge without the wait for the record: it counts the call
// against a lease, queues its use for the next flush and returns at once,
// so that the caller can start the call's work while its use is recorded;
// the call is answered only once Wait returns nil. Its refusals are
// Charge's (an unknown key, too few credits), returned before anything is
// admitted.
func (m *Manager) Admit(ctx context.Context, hash string, cost int64, route string, now time.Time) (*Pending, error) {
	if cost <= 0 {
		return nil, billing.Errorf(billing.CodeBadRequest, "a debit must be positive, got %d", cost)
	}
	key, err := m.owner(ctx, hash, now)
	if err != nil {
		return nil, err
	}
	uid := key.uid
	a, err := m.account(uid, now)
	if err != nil {
		return nil, err
	}
	m.maybeSweep(now, a)
	charged := func(remaining int64, l billing.Lease) billing.Debited {
		return billing.Debited{UID: uid, KeyID: key.keyID, Route: route, Cost: cost, Remaining: remaining, At: now, Taken: l.Taken}
	}
	for first := true; ; first = false {
		if !first {
			now = m.clock.Now() // it waited for a lease
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		a.mu.Lock()
		h := a.cur
		if h != nil && !m.usable(h, now) {
			m.retire(a, h)
			h = nil
		}
		if h != nil && h.lease.Amount-h.used >= cost {
			c := m.admit(a, h, cost, route, now)
			l := h.lease
			ahead := m.prefetch(a, h, hash, now)
			a.mu.Unlock()
			return &Pending{Debited: charged(c.remaining, l), c: c, ahead: ahead}, nil
		}
		var back <-chan struct{} // the credits of the lease retired here
		if h != nil {
			left := h.lease.Amount - h.used
			if a.seen && left+a.balance < cost && (left > 0 || a.refused) {
				// Even with this lease back, the account cannot pay: keep
				// the lease for cheaper calls and refuse this one now. A
				// lease spent to the last credit goes to the store first,
				// whose refusal writes the credits-exhausted notice once.
				a.mu.Unlock()
				return nil, billing.ErrInsufficientCredits
			}
			m.retire(a, h) // too little left for this call
			if left > 0 {
				back = h.back // the next take needs them
			}
		}
		if t := a.taking; t != nil {
			a.mu.Unlock()
			if err := t.wait(ctx); err != nil {
				return nil, err
			}
			continue
		}
		t := &take{done: make(chan struct{})}
		a.taking = t
		want := a.want(cost)
		// The first take knows no balance: the store leases at most half.
		first := !a.seen
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
			t.err = m.takeLease(a, hash, lease{want: want, need: cost, half: first}, now)
			close(t.done)
		}()
		if err := t.wait(ctx); err != nil {
			return nil, err
		}
	}
}

// admit counts a call against h and queues it for the next flush, starting
// one if none is in flight. a.mu is held.
func (m *Manager) admit(a *account, h *held, cost int64, route string, now time.Time) *call {
	h.used += cost
	month, day := billing.UsageKeys(now)
	h.days.add(month, day, cost)
	h.routes.add(month, day, route, cost)
	h.lastUse, a.lastUsed = now, now
	c := &call{cost: cost, month: month, day: day, route: route, remaining: a.balance + a.others + h.lease.Amount - h.used, done: make(chan struct{})}
	h.pending = append(h.pending, c)
	m.pending.Add(1)
	for n := m.unanswered.Add(1); ; {
		c := m.crowd.Load()
		if n <= c || m.crowd.CompareAndSwap(c, n) {
			break
		}
	}
	m.queue(a, h)
	select {
	case m.more <- struct{}{}:
	default:
	}
	return c
}

// queue puts h in the next flush, starting one if none is in flight. a.mu
// is held.
func (m *Manager) queue(a *account, h *held) {
	if h.queued {
		return
	}
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

// lease is what a lease transaction asks for.
type lease struct {
	want int64 // the block
	need int64 // the least that serves the call (with half)
	// half: the balance is not known yet, and the store leases no more
	// than half of it (but need).
	half bool
	// ahead: a take ahead (prefetch), which replaces the current lease;
	// that one is settled with the account's next lease transaction. Its
	// refusal is not the account's exhaustion (the current lease still
	// serves) and makes no notice.
	ahead bool
}

// takeLease takes a block of credits for a as r asks, settling a's retired
// leases in the same transaction, and makes it current.
func (m *Manager) takeLease(a *account, hash string, r lease, now time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
	defer cancel()
	id := m.cfg.Owner + "-" + strconv.FormatInt(m.seq.Add(1), 36)
	a.mu.Lock()
	settle := a.done
	a.done = nil
	a.mu.Unlock()
	t, err := m.st.TakeLease(ctx, store.LeaseRequest{UID: a.uid, ID: id, Owner: m.cfg.Owner,
		Want: r.want, Need: r.need, Half: r.half, TTL: m.cfg.TTL, KeyID: m.keyID(hash), Settle: settle, Ahead: r.ahead}, now)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.taking = nil
	if err == nil || errors.Is(err, billing.ErrInsufficientCredits) {
		a.balance, a.others, a.seen = t.Balance, t.Leased, true
		if !r.ahead {
			a.refused = err != nil
		}
		m.forgetLeases(settle)
	} else {
		a.done = append(a.done, settle...) // the next transaction settles them
	}
	if err != nil {
		if errors.Is(err, billing.ErrNotFound) {
			return billing.ErrInvalidAPIKey // the owner is gone
		}
		if billing.ErrorCode(err) == billing.CodeInternal {
			if passing(err) {
				// A transaction that timed out or was aborted (contention):
				// the caller may retry soon.
				return fmt.Errorf("lease: %w: %w", billing.ErrUnavailable, err)
			}
			return fmt.Errorf("lease: %w", err)
		}
		return err
	}
	l := t.Lease
	usable := l.ExpiresAt.Add(-m.margin())
	if !usable.After(now) {
		usable = l.ExpiresAt
	}
	if old := a.cur; old != nil { // taken ahead
		old.deferred = true
		m.retire(a, old)
	}
	a.cur = &held{lease: l, usableUntil: usable, lastUse: now, back: make(chan struct{}), days: usage{}, routes: routeUsage{},
		recorded: store.LeaseUse{UID: a.uid, ID: l.ID}}
	if m.closed.Load() {
		m.retire(a, a.cur) // Close came while it was being taken
		return errClosed
	}
	return nil
}

// prefetch starts taking a's next lease once h, which serves, has a fifth
// of its credits left, so that calls seldom wait for a lease transaction:
// the new lease replaces h when it lands. Only for an account whose block
// has grown (a quiet one would take leases a fifth more often, for calls
// that seldom wait), and only while the balance beside
// the leases, as last seen, leaves a whole block and as much again beside
// it: near the end of the credits, they are not split over more leases
// than needed. a.mu is held.
func (m *Manager) prefetch(a *account, h *held, hash string, now time.Time) *take {
	if a.taking != nil || m.closed.Load() || !a.seen || a.block <= m.cfg.FirstBlock || (h.lease.Amount-h.used)*5 > h.lease.Amount {
		return nil
	}
	// The block h's pace asks for (retire sets it once h is done).
	want := m.blocks.next(a.block, h.lease.Amount, h.used, now.Sub(h.lease.TakenAt))
	if a.balance < 2*want {
		return nil
	}
	t := &take{done: make(chan struct{})}
	a.taking = t
	m.work.Add(1)
	go func() {
		defer m.work.Done()
		t.err = m.takeLease(a, hash, lease{want: want, ahead: true}, now)
		close(t.done)
	}()
	return t
}

// margin is how long before its expiry a lease stops admitting calls, so
// that the last flush lands before another instance may settle it.
func (m *Manager) margin() time.Duration { return min(m.cfg.TTL/4, 5*time.Second) }

// usable reports whether h may admit a call at now: before its expiry, or,
// once a journal write listing it has landed, while the instance's journal
// writes renew it (billing.Lease.Renewed), a margin before the renewal
// lapses. So a busy instance keeps its leases with no write on their
// accounts. a.mu is held.
func (m *Manager) usable(h *held, now time.Time) bool {
	if now.Before(h.usableUntil) {
		return true
	}
	alive := time.Unix(0, m.aliveUntil.Load())
	return h.listed && h.lease.Renewed(now.Add(m.margin()), alive)
}

// passing reports whether err is a Firestore failure that a retry soon
// gets past: a deadline, an abort under contention, an unavailable backend.
func passing(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.DeadlineExceeded, codes.Aborted, codes.Unavailable, codes.ResourceExhausted:
		return true
	}
	return false
}

// forgetLeases notes leases settled, whose journal entries the next flush
// deletes.
func (m *Manager) forgetLeases(uses []store.LeaseUse) {
	if len(uses) == 0 {
		return
	}
	m.fmu.Lock()
	for _, u := range uses {
		m.forget = append(m.forget, u.ID)
	}
	m.fmu.Unlock()
}

// account returns uid's account on this instance, making it (used at now)
// if it has none.
func (m *Manager) account(uid string, now time.Time) (*account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return nil, errClosed
	}
	a, ok := m.accounts[uid]
	if !ok {
		a = &account{uid: uid, block: m.cfg.FirstBlock, lastUsed: now}
		m.accounts[uid] = a
	}
	return a, nil
}

// Close stops admitting calls, waits for the calls admitted to be recorded
// and answered, and returns every lease, the accounts' in parallel. It
// returns ctx's error if that takes longer than ctx allows; leases not
// returned then expire and are settled from the journal.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed.Swap(true) {
		m.mu.Unlock()
		return nil
	}
	m.stopWatch()
	for _, a := range m.accounts {
		a.mu.Lock()
		if a.cur != nil {
			m.retire(a, a.cur)
		}
		a.mu.Unlock()
	}
	m.mu.Unlock()
	m.watching.Wait()
	done := make(chan struct{})
	go func() {
		m.work.Wait()
		m.fmu.Lock()
		if len(m.stale) > 0 && !m.flushing { // a last write to correct them
			m.dirty, m.stale = m.stale, nil
			m.flushing = true
			m.work.Add(1)
			go m.flush()
		}
		m.fmu.Unlock()
		m.work.Wait()
		m.mu.Lock()
		accounts := make([]*account, 0, len(m.accounts))
		for _, a := range m.accounts {
			accounts = append(accounts, a)
		}
		m.mu.Unlock()
		var wg sync.WaitGroup
		for _, a := range accounts {
			a.mu.Lock()
			uses := a.done
			a.done = nil
			a.mu.Unlock()
			if len(uses) == 0 {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.settle(a, uses) // closingAtOnce at a time
			}()
		}
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("lease: close: %w", ctx.Err())
	}
}
