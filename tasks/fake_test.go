package tasks_test

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/tasks"
	"github.com/paymeter/paymeter/tasks/taskstest"
)

// memStore is an in-memory billing.Accounts with a ledger and the overdue
// query: one mutex stands in for Firestore's transactions.
type memStore struct {
	mu       sync.Mutex
	free     billing.Plan
	accounts map[string][]byte // uid -> JSON of the account (a fresh copy per load)
	ledger   map[string]map[string]billing.Entry
}

var (
	_ billing.Accounts    = (*memStore)(nil)
	_ billing.History     = (*memStore)(nil)
	_ tasks.OverdueFinder = (*memStore)(nil)
	_ taskstest.Store     = (*memStore)(nil)
)

func newMemStore() *memStore {
	return &memStore{free: billing.DefaultCatalog().Free(), accounts: map[string][]byte{},
		ledger: map[string]map[string]billing.Entry{}}
}

func (s *memStore) load(uid string) (*billing.Account, error) {
	data, ok := s.accounts[uid]
	if !ok {
		return nil, billing.ErrNotFound
	}
	var a billing.Account
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

func (s *memStore) save(a *billing.Account) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	s.accounts[a.UID] = data
	if s.ledger[a.UID] == nil {
		s.ledger[a.UID] = map[string]billing.Entry{}
	}
	for _, e := range a.Entries() {
		s.ledger[a.UID][e.ID] = e
	}
	return nil
}

func (s *memStore) Account(_ context.Context, uid string) (*billing.Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load(uid)
}

func (s *memStore) Provision(_ context.Context, id billing.Identity, now time.Time) (*billing.Account, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, err := s.load(id.UID); err == nil {
		return a, false, nil
	}
	a := billing.NewAccount(id.UID, id.Email, s.free, now)
	if err := s.save(a); err != nil {
		return nil, false, err
	}
	return a, true, nil
}

func (s *memStore) UpdateAccount(_ context.Context, uid string, fn func(*billing.Account) error) (*billing.Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.load(uid)
	if err != nil {
		return nil, err
	}
	if err := fn(a); err != nil {
		return nil, err
	}
	if err := s.save(a); err != nil {
		return nil, err
	}
	return a, nil
}

func (s *memStore) Ledger(_ context.Context, uid string, limit int) ([]billing.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []billing.Entry
	for _, e := range s.ledger[uid] {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (s *memStore) Usage(context.Context, string, time.Time, time.Time) ([]billing.DayUsage, error) {
	return nil, nil
}

// Overdue pages Free accounts with a next grant before before, ordered by
// next grant time then uid; the cursor is "<RFC 3339 time>|<uid>".
func (s *memStore) Overdue(_ context.Context, before time.Time, pageSize int, after string) ([]billing.GrantTask, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []billing.GrantTask
	for uid := range s.accounts {
		a, err := s.load(uid)
		if err != nil {
			return nil, "", err
		}
		if next, ok := a.NextGrant(); ok && next.At.Before(before) {
			all = append(all, next)
		}
	}
	key := func(t billing.GrantTask) string { return t.At.UTC().Format(time.RFC3339Nano) + "|" + t.UID }
	sort.Slice(all, func(i, j int) bool {
		if !all[i].At.Equal(all[j].At) {
			return all[i].At.Before(all[j].At)
		}
		return all[i].UID < all[j].UID
	})
	start := 0
	if after != "" {
		at, uid, _ := strings.Cut(after, "|")
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return nil, "", err
		}
		start = sort.Search(len(all), func(i int) bool {
			return all[i].At.After(t) || (all[i].At.Equal(t) && all[i].UID > uid)
		})
	}
	page := all[start:min(start+pageSize, len(all))]
	next := ""
	if start+pageSize < len(all) {
		next = key(page[len(page)-1])
	}
	return page, next, nil
}
