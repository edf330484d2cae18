package lease

import (
	"context"
	"time"

	"github.com/paymeter/paymeter/store"
)

// retire stops h admitting calls and settles it once its flushes are done,
// adapting a's block size to how fast h was spent. a.mu is held.
func (m *Manager) retire(a *account, h *held) {
	if h.retired {
		return
	}
	h.retired = true
	if a.cur == h {
		a.cur = nil
	}
	a.block = m.blocks.next(a.block, h.lease.Amount, h.used, h.lastUse.Sub(h.lease.TakenAt))
	m.returnIfDone(a, h)
}

// returnIfDone settles h once it is retired and its journal holds exactly
// the use of the calls answered: at once when it has credits to give back
// (one transaction, with a's other retired leases), else with the
// account's next lease transaction, which saves a transaction per block
// under load. A lease whose last write failed waits for the next flush to
// rewrite its figure. a.mu is held.
func (m *Manager) returnIfDone(a *account, h *held) {
	if !h.retired || h.returned || h.queued || h.inFlush || len(h.pending) > 0 {
		return
	}
	if h.stale {
		h.queued = true
		m.fmu.Lock()
		m.stale = append(m.stale, queued{a, h}) // rewritten by the next flush
		m.fmu.Unlock()
		return
	}
	h.returned = true
	a.done = append(a.done, h.recorded)
	if (h.deferred || h.recorded.Used == h.lease.Amount) && !m.closed.Load() {
		close(h.back)
		return
	}
	uses := a.done
	a.done = nil
	m.work.Add(1)
	go func() {
		defer m.work.Done()
		defer close(h.back)
		m.settle(a, uses)
	}()
}

// returnsAtOnce is how many return transactions an instance runs at once.
// An idle sweep after a burst over many accounts finds them all idle
// together: a thousand returns at once timed out on the emulator (each
// reads the journals of the account's other holders) and starved the
// instance's calls for a minute; 16 at once still timed some out and made
// a revocation take 8 s to be seen, 4 none. Once Close has begun (SIGTERM:
// 10 s to return everything) closingAtOnce run at once.
const (
	returnsAtOnce = 4
	closingAtOnce = 16
)

// settle returns a's retired leases with the use their journal entries
// hold, returnsAtOnce at a time. If that fails they wait for the account's
// next lease transaction, or expire and are settled from the journal.
func (m *Manager) settle(a *account, uses []store.LeaseUse) {
	sem := m.returning
	if m.closed.Load() {
		sem = m.closing
	}
	sem <- struct{}{}
	defer func() { <-sem }()
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
	defer cancel()
	balance, err := m.st.ReturnLease(ctx, a.uid, m.clock.Now(), uses...)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		m.log.Warn("lease: return", "uid", a.uid, "leases", len(uses), "err", err)
		a.done = append(a.done, uses...)
		return
	}
	m.forgetLeases(uses)
	if a.cur == nil {
		a.balance, a.others = balance, 0
	}
}

// maybeSweep, at most twice per Idle (and once a second), retires the
// idle and nearly expired leases, settles what idle accounts have left to
// settle and forgets the accounts idle for long. It runs on the request
// path: Cloud Run gives an instance CPU only while it serves requests. The
// idle lease of calling, the account of the call that runs it, is settled
// by the lease transaction that call is about to make, not by one more.
func (m *Manager) maybeSweep(now time.Time, calling *account) {
	last := m.lastSweep.Load()
	if now.UnixNano()-last < int64(min(m.cfg.Idle/2, time.Second)) || !m.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for uid, a := range m.accounts {
		a.mu.Lock()
		if h := a.cur; h != nil && (now.Sub(h.lastUse) >= m.cfg.Idle || !m.usable(h, now)) {
			h.deferred = a == calling
			m.retire(a, h)
		}
		if a != calling && a.cur == nil && a.taking == nil && len(a.done) > 0 && now.Sub(a.lastUsed) >= m.cfg.Idle {
			uses := a.done
			a.done = nil
			m.work.Add(1)
			go func() {
				defer m.work.Done()
				m.settle(a, uses)
			}()
		}
		if a != calling && a.cur == nil && a.taking == nil && len(a.done) == 0 && now.Sub(a.lastUsed) > 10*m.cfg.Idle {
			delete(m.accounts, uid) // its block size starts again
		}
		a.mu.Unlock()
	}
}
