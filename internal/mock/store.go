package mock

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/paymeter/paymeter/billing"
)

// Store is an in-memory double of the Firestore store's account and
// metering contract, for tests that need many fast runs: each change runs on
// a fresh copy of the account under one mutex, as a Firestore transaction
// does, and an event id is recorded with the change it makes. It holds
// accounts, their ledgers and the ids of applied events.
type Store struct {
	mu       sync.Mutex
	free     billing.Plan
	verified bool              // RequireVerifiedEmail
	accounts map[string][]byte // uid -> JSON of the account (a fresh copy per load)
	ledger   map[string]map[string]billing.Entry
	events   map[string]bool
	keys     map[string]billing.APIKey              // hash -> key
	usage    map[string]map[string]map[string]int64 // uid -> month -> day -> credits
	journals map[string]*journal                    // owner -> its lease journal
	watchers []func(hash string)                    // revocation listeners
	updates  int64                                  // the journals' update clock
}

var (
	_ billing.Accounts = (*Store)(nil)
	_ billing.History  = (*Store)(nil)
	_ billing.Events   = (*Store)(nil)
)

// NewStore returns an empty store whose new accounts start on the catalog's Free plan.
func NewStore() *Store {
	return &Store{free: billing.DefaultCatalog().Free(), accounts: map[string][]byte{},
		ledger: map[string]map[string]billing.Entry{}, events: map[string]bool{},
		keys: map[string]billing.APIKey{}, usage: map[string]map[string]map[string]int64{}, journals: map[string]*journal{}}
}

// RequireVerifiedEmail makes Provision open the account of an identity
// whose email is not verified with its Free credits held back, as the
// Firestore store's option does.
func (s *Store) RequireVerifiedEmail(on bool) { s.verified = on }

func (s *Store) load(uid string) (*billing.Account, error) {
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

func (s *Store) put(a *billing.Account) error {
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

// Account returns a copy of the account of uid, or billing.ErrNotFound.
func (s *Store) Account(_ context.Context, uid string) (*billing.Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load(uid)
}

// Provision returns the account of id.UID, creating it if absent.
func (s *Store) Provision(_ context.Context, id billing.Identity, now time.Time) (*billing.Account, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, err := s.load(id.UID); err == nil {
		return a, false, nil
	}
	a := billing.OpenAccount(id, s.free, s.verified, now)
	if err := s.put(a); err != nil {
		return nil, false, err
	}
	return a, true, nil
}

// UpdateAccount applies fn to a copy of the account and keeps it unless fn fails.
func (s *Store) UpdateAccount(_ context.Context, uid string, fn func(*billing.Account) error) (*billing.Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.load(uid)
	if err != nil {
		return nil, err
	}
	if err := fn(a); err != nil {
		return nil, err
	}
	if err := s.put(a); err != nil {
		return nil, err
	}
	return a, nil
}

// ApplyEvent is UpdateAccount that records eventID with the change, once.
func (s *Store) ApplyEvent(_ context.Context, eventID, uid string, fn func(*billing.Account) error) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.events[eventID] {
		return false, nil
	}
	a, err := s.load(uid)
	if err != nil {
		return false, err
	}
	if err := fn(a); err != nil {
		return false, err
	}
	if err := s.put(a); err != nil {
		return false, err
	}
	s.events[eventID] = true
	return true, nil
}

// AccountByCustomer finds the account linked to a customer id.
func (s *Store) AccountByCustomer(_ context.Context, customerID string) (*billing.Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid := range s.accounts {
		if a, _ := s.load(uid); a != nil && customerID != "" && a.CustomerID == customerID {
			return a, nil
		}
	}
	return nil, billing.ErrNotFound
}

// Ledger returns the newest limit entries, newest first (ties by id).
func (s *Store) Ledger(_ context.Context, uid string, limit int) ([]billing.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []billing.Entry
	for _, e := range s.ledger[uid] {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].At.Equal(out[j].At) {
			return out[i].At.After(out[j].At)
		}
		return out[i].ID < out[j].ID
	})
	return out[:min(limit, len(out))], nil
}

// Overdue pages Free accounts with a next grant before before, ordered by
// next grant time then uid; the cursor is "<RFC 3339 time>|<uid>".
func (s *Store) Overdue(_ context.Context, before time.Time, pageSize int, after string) ([]billing.GrantTask, string, error) {
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
		last := page[len(page)-1]
		next = last.At.UTC().Format(time.RFC3339Nano) + "|" + last.UID
	}
	return page, next, nil
}
