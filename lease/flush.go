package lease

import (
	"context"
	"errors"
	"time"

	"github.com/paymeter/paymeter/store"
)

// part is one lease's share of a flush.
type part struct {
	queued
	calls []*call
	use   store.LeaseUse
}

// maxLeasesPerCommit keeps a commit within Firestore's 500 writes (a lease
// document and a usage document each).
const maxLeasesPerCommit = 200

// flush records the calls admitted on every lease, one commit per round,
// and answers them, until none are left; retired leases are then returned.
func (m *Manager) flush() {
	defer m.work.Done()
	for {
		m.linger()
		m.fmu.Lock()
		batch := m.dirty
		m.dirty = nil
		if len(batch) == 0 {
			m.flushing = false
			m.fmu.Unlock()
			return
		}
		m.fmu.Unlock()

		parts := make([]part, 0, len(batch))
		var n int64
		for _, q := range batch {
			q.a.mu.Lock()
			q.h.queued = false
			if calls := q.h.pending; len(calls) > 0 {
				q.h.pending = nil
				q.h.inFlush = true
				use := store.LeaseUse{UID: q.a.uid, ID: q.h.lease.ID, Used: q.h.used, Delta: q.h.used - q.h.recorded}
				use.Notice = q.h.crossing(q.a.balance, m.clock.Now())
				for _, c := range calls {
					if c.route != "" {
						if use.Routes == nil {
							use.Routes = map[string]int64{}
						}
						use.Routes[c.route] += c.cost
					}
				}
				parts = append(parts, part{queued: q, calls: calls, use: use})
				n += int64(len(calls))
			}
			q.a.mu.Unlock()
		}
		m.pending.Add(-n)
		m.peak = max(n, m.peak*7/8) // decays to 1: a lone caller never waits

		errs := m.record(parts)
		for i, p := range parts {
			err := errs[i]
			p.a.mu.Lock()
			p.h.inFlush = false
			if err == nil {
				p.h.recorded = p.use.Used
			} else {
				// Whether or not the commit landed, the lease document has
				// the truth that settlement reads; stop spending this lease.
				m.log.Warn("lease: record use", "uid", p.a.uid, "lease", p.h.lease.ID, "calls", len(p.calls), "err", err)
				m.retire(p.a, p.h)
				err = errNotRecorded
			}
			m.returnIfDone(p.a, p.h)
			p.a.mu.Unlock()
			for _, c := range p.calls {
				c.done <- err
			}
		}
	}
}

// record commits the parts' use, maxLeasesPerCommit leases a commit, and
// returns each part's error. A commit refused because one of its leases was
// settled meanwhile is retried lease by lease, so that the others' calls
// are recorded.
func (m *Manager) record(parts []part) []error {
	errs := make([]error, len(parts))
	for lo := 0; lo < len(parts); lo += maxLeasesPerCommit {
		hi := min(lo+maxLeasesPerCommit, len(parts))
		uses := make([]store.LeaseUse, 0, hi-lo)
		for _, p := range parts[lo:hi] {
			uses = append(uses, p.use)
		}
		err := m.commit(uses)
		if errors.Is(err, store.ErrLeaseGone) && len(uses) > 1 {
			for i := range uses {
				errs[lo+i] = m.commit(uses[i : i+1])
			}
			continue
		}
		for i := lo; i < hi; i++ {
			errs[i] = err
		}
	}
	return errs
}

func (m *Manager) commit(uses []store.LeaseUse) error {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
	defer cancel()
	return m.st.RecordLeaseUses(ctx, uses, m.clock.Now())
}

// linger waits, up to the configured time, until as many calls are pending
// as the largest recent flush held.
func (m *Manager) linger() {
	if m.cfg.Linger <= 0 {
		return
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		n := m.pending.Load()
		if n == 0 || n >= m.peak {
			return
		}
		if timer == nil {
			timer = time.NewTimer(m.cfg.Linger)
		}
		select {
		case <-m.more:
		case <-timer.C:
			return
		}
	}
}
