package mock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/store"
)

// The metered path, as store.Store keeps it: API keys by hash, the usage of
// each day under billing.UsageKeys, and credit leases whose recorded use is
// read when they are settled.

var _ billing.Meter = (*Store)(nil)

// CreateKey stores key under hash. Unlike store.Store.CreateKey it does
// not count the owner's keys.
func (s *Store) CreateKey(_ context.Context, hash string, key billing.APIKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[hash] = key
	return nil
}

// Key returns the key under hash, revoked or not, or billing.ErrInvalidAPIKey.
func (s *Store) Key(_ context.Context, hash string) (billing.APIKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[hash]
	if !ok {
		return billing.APIKey{}, billing.ErrInvalidAPIKey
	}
	return k, nil
}

// DebitKey debits cost from the key's account and counts it in the day's
// usage, in one step, as store.Store.DebitKey does in one transaction.
func (s *Store) DebitKey(_ context.Context, hash string, cost int64, now time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[hash]
	if !ok || k.Revoked {
		return 0, billing.ErrInvalidAPIKey
	}
	a, apply, err := s.settled(k.UID, now)
	if err != nil {
		return 0, err
	}
	if err := a.Debit(cost, now); err != nil {
		return 0, err
	}
	if err := s.put(a); err != nil {
		return 0, err
	}
	apply()
	s.count(k.UID, now, cost)
	return a.Balance(now), nil
}

// count adds n to uid's usage of now's day, under the keys the Firestore
// store writes.
func (s *Store) count(uid string, now time.Time, n int64) {
	month, day := billing.UsageKeys(now)
	if s.usage[uid] == nil {
		s.usage[uid] = map[string]map[string]int64{}
	}
	if s.usage[uid][month] == nil {
		s.usage[uid][month] = map[string]int64{}
	}
	s.usage[uid][month][day] += n
}

// Usage returns the credits spent per UTC day from from to to, inclusive,
// reading the month documents as store.Store.Usage does.
func (s *Store) Usage(_ context.Context, uid string, from, to time.Time) ([]billing.DayUsage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	counts := map[string]int64{}
	for month, days := range s.usage[uid] {
		for day, n := range days {
			date, err := billing.UsageDate(month, day)
			if err != nil {
				return nil, err
			}
			counts[date] += n
		}
	}
	var out []billing.DayUsage
	from, to = from.UTC(), to.UTC()
	for d := time.Date(from.Year(), from.Month(), from.Day(), 0, 0, 0, 0, time.UTC); !d.After(to); d = d.AddDate(0, 0, 1) {
		out = append(out, billing.DayUsage{Date: billing.Day(d), Credits: counts[billing.Day(d)], Routes: map[string]int64{}})
	}
	return out, nil
}

// journal is an instance's lease journal, as store.Store keeps it in one
// document.
type journal struct {
	seq        int64
	leases     map[string]store.LeaseUse
	gone       map[string]bool
	updated    time.Time
	aliveUntil time.Time
}

// tick returns the next journal update time. s.mu is held.
func (s *Store) tick() time.Time {
	s.updates++
	return time.Unix(0, s.updates)
}

func (s *Store) countDays(uid string, days map[string]map[string]int64) {
	for month, ds := range days {
		for day, n := range ds {
			if s.usage[uid] == nil {
				s.usage[uid] = map[string]map[string]int64{}
			}
			if s.usage[uid][month] == nil {
				s.usage[uid][month] = map[string]int64{}
			}
			s.usage[uid][month][day] += n
		}
	}
}

// settled loads the account of uid and settles own with the use given and
// its leases expired at now with the use their journals record, fencing
// those journals, as store.Store does in one transaction. s.mu is held.
func (s *Store) settled(uid string, now time.Time, own ...store.LeaseUse) (*billing.Account, func(), error) {
	a, err := s.load(uid)
	if err != nil {
		return nil, nil, err
	}
	var after []func()
	for _, u := range own {
		if _, err := a.SettleLease(u.ID, u.Used, now); err == nil {
			after = append(after, func() { s.countDays(uid, u.Days) })
		} else if !errors.Is(err, billing.ErrNotFound) {
			return nil, nil, err
		}
	}
	for _, l := range a.ExpiredLeases(now) {
		j := s.journals[l.Owner]
		var u store.LeaseUse
		if j != nil {
			var listed bool
			if u, listed = j.leases[l.ID]; listed && l.Renewed(now, j.aliveUntil) {
				continue // its holder is alive
			}
		}
		if _, err := a.SettleLease(l.ID, u.Used, now); err != nil {
			return nil, nil, err
		}
		after = append(after, func() {
			s.countDays(uid, u.Days)
			j := s.journals[l.Owner]
			if j == nil {
				j = &journal{leases: map[string]store.LeaseUse{}, gone: map[string]bool{}}
				s.journals[l.Owner] = j
			}
			delete(j.leases, l.ID)
			j.gone[l.ID] = true
			j.updated = s.tick()
		})
	}
	return a, func() {
		for _, f := range after {
			f()
		}
	}, nil
}

// TakeLease takes a lease as store.Store.TakeLease does.
func (s *Store) TakeLease(_ context.Context, r store.LeaseRequest, now time.Time) (store.Taken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, apply, err := s.settled(r.UID, now, r.Settle...)
	if err != nil {
		return store.Taken{}, fmt.Errorf("take lease on %s: %w", r.UID, err)
	}
	l, err := a.TakeLease(r.ID, r.Owner, r.Size(a.Balance(now)), r.TTL, now)
	if err == nil {
		a.UsedKey(r.KeyID, now)
	}
	if err != nil && !errors.Is(err, billing.ErrInsufficientCredits) {
		return store.Taken{}, fmt.Errorf("take lease on %s: %w", r.UID, err)
	}
	if err := s.put(a); err != nil {
		return store.Taken{}, err
	}
	apply()
	if l.ID == "" {
		return store.Taken{Balance: a.Balance(now), Leased: a.Leased()}, billing.ErrInsufficientCredits
	}
	return store.Taken{Lease: l, Balance: a.Balance(now), Leased: a.Leased() - l.Amount}, nil
}

// WriteJournal writes one flush as store.Store.WriteJournal does.
func (s *Store) WriteJournal(_ context.Context, w store.JournalWrite) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.journals[w.Owner]
	switch {
	case w.After.IsZero() && j != nil, !w.After.IsZero() && (j == nil || !j.updated.Equal(w.After)):
		return time.Time{}, fmt.Errorf("write journal %s: %w", w.Owner, store.ErrJournalMoved)
	case j == nil:
		j = &journal{leases: map[string]store.LeaseUse{}, gone: map[string]bool{}}
		s.journals[w.Owner] = j
	}
	j.seq, j.aliveUntil = w.Seq, w.AliveUntil
	for _, u := range w.Uses {
		j.leases[u.ID] = u
	}
	for _, id := range w.Forget {
		delete(j.leases, id)
		delete(j.gone, id)
	}
	j.updated = s.tick()
	return j.updated, nil
}

// ReadJournal reads owner's journal as store.Store.ReadJournal does.
func (s *Store) ReadJournal(_ context.Context, owner string) (store.Journal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.journals[owner]
	if j == nil {
		return store.Journal{}, nil
	}
	out := store.Journal{Seq: j.seq, Leases: map[string]store.LeaseUse{}, Gone: map[string]bool{}, Updated: j.updated,
		AliveUntil: j.aliveUntil}
	for id, u := range j.leases {
		out.Leases[id] = u
	}
	for id := range j.gone {
		out.Gone[id] = true
	}
	return out, nil
}

// ReturnLease settles uid's leases uses with the use given and returns the
// balance after.
func (s *Store) ReturnLease(_ context.Context, uid string, now time.Time, uses ...store.LeaseUse) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, apply, err := s.settled(uid, now, uses...)
	if err != nil {
		return 0, fmt.Errorf("return leases of %s: %w", uid, err)
	}
	if err := s.put(a); err != nil {
		return 0, err
	}
	apply()
	return a.Balance(now), nil
}

// RevokeKey revokes the key under hash and tells the revocation listeners.
func (s *Store) RevokeKey(hash string) {
	s.mu.Lock()
	k := s.keys[hash]
	k.Revoked = true
	s.keys[hash] = k
	watchers := append([]func(string){}, s.watchers...)
	s.mu.Unlock()
	for _, w := range watchers {
		w(hash)
	}
}

// WatchRevocations calls revoked for each key revoked by RevokeKey until ctx
// is done.
func (s *Store) WatchRevocations(ctx context.Context, _ time.Time, revoked func(hash string)) error {
	s.mu.Lock()
	s.watchers = append(s.watchers, revoked)
	s.mu.Unlock()
	<-ctx.Done()
	return ctx.Err()
}
