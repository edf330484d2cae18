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
	a, err := s.settled(k.UID, now)
	if err != nil {
		return 0, err
	}
	if err := a.Debit(cost, now); err != nil {
		return 0, err
	}
	if err := s.put(a); err != nil {
		return 0, err
	}
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

// settled loads the account of uid and settles its leases expired at now
// and those named in ids with the use recorded for them. s.mu is held.
func (s *Store) settled(uid string, now time.Time, ids ...string) (*billing.Account, error) {
	a, err := s.load(uid)
	if err != nil {
		return nil, err
	}
	for _, l := range a.ExpiredLeases(now) {
		ids = append(ids, l.ID)
	}
	for _, id := range ids {
		if _, err := a.SettleLease(id, s.leases[id], now); err != nil && !errors.Is(err, billing.ErrNotFound) {
			return nil, err
		}
	}
	return a, nil
}

// putSettled keeps a and forgets the use of the leases it settled.
func (s *Store) putSettled(a *billing.Account) error {
	for _, id := range a.SettledLeases() {
		delete(s.leases, id)
	}
	return s.put(a)
}

// TakeLease takes a lease as store.Store.TakeLease does.
func (s *Store) TakeLease(_ context.Context, r store.LeaseRequest, now time.Time) (billing.Lease, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.settled(r.UID, now)
	if err != nil {
		return billing.Lease{}, 0, fmt.Errorf("take lease on %s: %w", r.UID, err)
	}
	l, err := a.TakeLease(r.ID, r.Owner, r.Want, r.TTL, now)
	if err != nil && !errors.Is(err, billing.ErrInsufficientCredits) {
		return billing.Lease{}, 0, fmt.Errorf("take lease on %s: %w", r.UID, err)
	}
	if err := s.putSettled(a); err != nil {
		return billing.Lease{}, 0, err
	}
	if l.ID == "" {
		return billing.Lease{}, a.Balance(now), billing.ErrInsufficientCredits
	}
	s.leases[l.ID] = 0
	if k, ok := s.keys[r.TouchKey]; ok {
		k.LastUsedAt = now
		s.keys[r.TouchKey] = k
	}
	return l, a.Balance(now), nil
}

// RecordLeaseUses records the leases' use and the day's usage, all or
// nothing; store.ErrLeaseGone if any lease was settled already.
func (s *Store) RecordLeaseUses(_ context.Context, uses []store.LeaseUse, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range uses {
		if _, ok := s.leases[u.ID]; !ok {
			return fmt.Errorf("record use of %d leases: %w", len(uses), store.ErrLeaseGone)
		}
	}
	for _, u := range uses {
		s.leases[u.ID] = u.Used
		s.count(u.UID, now, u.Delta)
	}
	return nil
}

// ReturnLease settles leases ids of uid with their recorded use and returns
// the balance after.
func (s *Store) ReturnLease(_ context.Context, uid string, now time.Time, ids ...string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.settled(uid, now, ids...)
	if err != nil {
		return 0, fmt.Errorf("return leases %v of %s: %w", ids, uid, err)
	}
	if err := s.putSettled(a); err != nil {
		return 0, err
	}
	return a.Balance(now), nil
}
