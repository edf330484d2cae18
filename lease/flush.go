package lease

import (
	"context"
	"time"

	"github.com/paymeter/paymeter/store"
)

// part is one lease's share of a flush.
type part struct {
	queued
	calls []*call
	use   store.LeaseUse
}

// flush records the calls admitted on every lease, one journal write per
// round, and answers them, until none are left; retired leases are then
// settled.
func (m *Manager) flush() {
	defer m.work.Done()
	for {
		m.linger()
		m.fmu.Lock()
		batch := m.dirty
		m.dirty = nil
		if len(batch) > 0 {
			batch = append(batch, m.stale...) // calls are flowing: correct the figures of failed writes
			m.stale = nil
		}
		forget := append([]string(nil), m.forget...)
		if len(batch) == 0 {
			m.flushing = false
			m.fmu.Unlock()
			return
		}
		m.fmu.Unlock()

		parts := make([]part, 0, len(batch))
		uses := make([]store.LeaseUse, 0, len(batch))
		var n int64
		for _, q := range batch {
			q.a.mu.Lock()
			q.h.queued = false
			calls := q.h.pending
			q.h.pending = nil
			if (len(calls) > 0 || q.h.stale) && !q.h.gone {
				q.h.inFlush = true
				p := part{queued: q, calls: calls, use: store.LeaseUse{UID: q.a.uid, ID: q.h.lease.ID, Used: q.h.used, LastUse: q.h.lastUse,
					Days: q.h.days.clone(), Routes: q.h.routes.clone()}}
				p.use.Notice = q.h.crossing(q.a.balance, m.clock.Now())
				parts = append(parts, p)
				uses = append(uses, p.use)
				n += int64(len(calls))
			} else {
				m.pending.Add(-int64(len(calls)))
				m.unanswered.Add(-int64(len(calls)))
				for _, c := range calls {
					c.answer(errNotRecorded)
				}
			}
			q.a.mu.Unlock()
		}
		m.pending.Add(-n)
		// The next flush waits for as many calls as were recently
		// unanswered at once: with C clients in a loop, all C of them, not
		// those that happened to arrive before this one. It decays to 1: a
		// lone caller never waits.
		m.peak = max(n, m.crowd.Swap(m.unanswered.Load()), m.peak*7/8)

		landed, gone, err := m.record(uses, forget)
		m.fmu.Lock()
		if err == nil {
			m.forget = m.forget[len(forget):]
		}
		for id := range gone {
			m.forget = append(m.forget, id) // settled by another transaction: its entry and fence can go
		}
		m.fmu.Unlock()
		for _, p := range parts {
			p.a.mu.Lock()
			p.h.inFlush = false
			var cerr error
			switch {
			case landed[p.use.ID]:
				p.h.recorded = p.use
				p.h.stale = false
				p.h.listed = true
			case gone[p.use.ID]:
				// Settled from the journal by another transaction (this
				// instance was frozen past its lease's expiry): these calls
				// were not recorded, and nobody will charge them.
				m.log.Warn("lease: settled by another transaction; calls refused", "uid", p.a.uid, "lease", p.h.lease.ID, "calls", len(p.calls))
				p.h.gone = true
				m.retire(p.a, p.h)
				if !p.h.returned {
					p.h.returned = true
					close(p.h.back)
				}
				cerr = errNotRecorded
			default:
				// The write failed, or may land later: these calls are
				// answered 503 and must not be charged. Their credits leave
				// the lease's figures; the next write rewrites the journal
				// with them, and the lease is not settled before it lands.
				m.log.Warn("lease: record use", "uid", p.a.uid, "lease", p.h.lease.ID, "calls", len(p.calls), "err", err)
				for _, c := range p.calls {
					p.h.used -= c.cost
					p.h.days.add(c.month, c.day, -c.cost)
					p.h.routes.add(c.month, c.day, c.route, -c.cost)
				}
				p.h.stale = true
				m.retire(p.a, p.h)
				cerr = errNotRecorded
			}
			m.returnIfDone(p.a, p.h)
			p.a.mu.Unlock()
			m.unanswered.Add(-int64(len(p.calls)))
			for _, c := range p.calls {
				c.answer(cerr)
			}
		}
	}
}

// record writes the uses to the journal in one write and returns the
// leases whose use landed and those that another transaction settled (and
// whose uses were therefore not written). After a failed write it reads the
// journal: a write that landed unseen is found by its seq, and the next
// attempt expects the journal's present update time, so that no earlier
// attempt can land after it. It returns the last error when no attempt
// landed.
func (m *Manager) record(uses []store.LeaseUse, forget []string) (landed, gone map[string]bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
	defer cancel()
	gone = map[string]bool{}
	tried := map[int64][]store.LeaseUse{}
	ids := func(us []store.LeaseUse) map[string]bool {
		out := make(map[string]bool, len(us))
		for _, u := range us {
			out[u.ID] = true
		}
		return out
	}
	for range 3 {
		if !m.j.known {
			j, rerr := m.st.ReadJournal(ctx, m.cfg.Owner)
			if rerr != nil {
				err = rerr
				if ctx.Err() != nil {
					break
				}
				continue
			}
			m.j = journalState{known: true, after: j.Updated, seq: j.Seq, lastTry: max(m.j.lastTry, j.Seq)}
			if us, ok := tried[j.Seq]; ok {
				return ids(us), gone, nil // an attempt landed unseen
			}
			kept := make([]store.LeaseUse, 0, len(uses))
			for _, u := range uses {
				if j.Gone[u.ID] {
					gone[u.ID] = true
				} else {
					kept = append(kept, u)
				}
			}
			uses = kept
		}
		seq := m.j.lastTry + 1
		m.j.lastTry = seq
		tried[seq] = uses
		now := m.clock.Now()
		alive := now.Add(m.cfg.TTL)
		t, werr := m.st.WriteJournal(ctx, store.JournalWrite{Owner: m.cfg.Owner, Seq: seq, After: m.j.after,
			Uses: uses, Forget: forget, Now: now, AliveUntil: alive})
		if werr == nil {
			m.j.after, m.j.seq = t, seq
			m.aliveUntil.Store(alive.UnixNano())
			return ids(uses), gone, nil
		}
		err = werr
		m.j.known = false
	}
	return nil, gone, err
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
