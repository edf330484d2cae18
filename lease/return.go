package lease

import (
	"context"
	"time"
)

// retire stops h admitting calls and returns it once its flushes are done,
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

// returnIfDone returns h once it is retired and its calls are recorded.
// a.mu is held.
func (m *Manager) returnIfDone(a *account, h *held) {
	if !h.retired || h.returned || h.queued || h.inFlush || len(h.pending) > 0 {
		return
	}
	h.returned = true
	m.work.Add(1)
	go func() {
		defer m.work.Done()
		m.giveBack(a, h)
	}()
}

// giveBack settles h in one transaction, with the spent leases not yet
// settled; if that fails the leases expire and the next account
// transaction settles them. A lease spent to the last credit gives nothing
// back: it waits for the next return (or Close, or its expiry), which saves
// a transaction per block under load.
func (m *Manager) giveBack(a *account, h *held) {
	defer close(h.back)
	a.mu.Lock()
	if h.lease.Amount == h.recorded && !m.closed.Load() {
		a.spent = append(a.spent, h.lease.ID)
		a.mu.Unlock()
		return
	}
	ids := append([]string{h.lease.ID}, a.spent...)
	a.spent = nil
	a.mu.Unlock()
	m.settle(a, ids)
}

func (m *Manager) settle(a *account, ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
	defer cancel()
	balance, err := m.st.ReturnLease(ctx, a.uid, m.clock.Now(), ids...)
	if err != nil {
		m.log.Warn("lease: return", "uid", a.uid, "leases", ids, "err", err)
		return
	}
	a.mu.Lock()
	if a.cur == nil {
		a.balance = balance
	}
	a.mu.Unlock()
}

// sweep returns idle and nearly expired leases, and forgets idle accounts.
func (m *Manager) sweep() {
	defer m.janitor.Done()
	tick := time.NewTicker(min(m.cfg.Idle/2, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-tick.C:
		}
		now := m.clock.Now()
		m.mu.Lock()
		for uid, a := range m.accounts {
			a.mu.Lock()
			if h := a.cur; h != nil && (now.Sub(h.lastUse) >= m.cfg.Idle || !now.Before(h.usableUntil)) {
				m.retire(a, h)
			}
			if a.cur == nil && a.taking == nil && len(a.spent) == 0 && now.Sub(a.lastUsed) > 10*m.cfg.Idle {
				delete(m.accounts, uid) // its block size starts again
			}
			a.mu.Unlock()
		}
		m.mu.Unlock()
	}
}
