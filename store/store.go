// Package store keeps Paymeter's accounts, ledgers, usage, API keys and
// processed billing events in Firestore. Every change to credits happens in
// a Firestore transaction that re-reads the account, applies a billing rule
// to it and writes it back with its ledger entries, so concurrent requests
// never overdraw and a retried request never applies twice.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paymeter/paymeter/billing"
)

// Collection names.
const (
	accountsCol = "accounts"
	ledgerCol   = "ledger"
	usageCol    = "usage"
	keysCol     = "apiKeys"
	eventsCol   = "stripeEvents"
	plansCol    = "plans"
)

// eventRetention is how long a processed event id is kept (a TTL policy on
// expireAt deletes it); Stripe retries a delivery for up to three days.
const eventRetention = 30 * 24 * time.Hour

// keyRetention is how long a revoked API key is kept (a TTL policy on
// expireAt deletes it), so that creating and revoking keys in a loop cannot
// grow storage without bound.
const keyRetention = 30 * 24 * time.Hour

// Store is the Firestore adapter. It is safe for concurrent use.
type Store struct {
	fs              *firestore.Client
	free            billing.Plan
	catalog         billing.Catalog // for the low-balance thresholds
	requireVerified bool
	onNotices       func(ctx context.Context, tasks []billing.NoticeTask)
}

var (
	_ billing.Accounts = (*Store)(nil)
	_ billing.History  = (*Store)(nil)
	_ billing.KeyStore = (*Store)(nil)
	_ billing.Meter    = (*Store)(nil)
	_ billing.Events   = (*Store)(nil)
)

// New returns a Store on client; free is the plan new accounts start on.
func New(client *firestore.Client, free billing.Plan) *Store {
	return &Store{fs: client, free: free, catalog: billing.DefaultCatalog()}
}

// RequireVerifiedEmail makes Provision open the account of an identity
// whose email is not verified with its Free credits held back
// (billing.OpenAccount). Call it before the Store is used.
func (s *Store) RequireVerifiedEmail(on bool) { s.requireVerified = on }

func (s *Store) account(uid string) *firestore.DocumentRef {
	return s.fs.Collection(accountsCol).Doc(uid)
}

// Account returns the account of uid, or billing.ErrNotFound, as it would
// be if its instances' credit leases came back now with the use their
// holders recorded: its balance is the balance minus the use recorded, not
// minus the credits out on leases, and it lists only the reservations'
// holds, whose credits stay unavailable. Nothing is written.
func (s *Store) Account(ctx context.Context, uid string) (*billing.Account, error) {
	a, err := s.StoredAccount(ctx, uid)
	if err != nil {
		return nil, err
	}
	uses, err := s.liveUse(ctx, a)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, l := range append([]billing.Lease(nil), a.Leases...) {
		if l.Owner == billing.HoldOwner {
			continue // a reservation's credits stay held until it is settled or expires
		}
		if _, err := a.SettleLease(l.ID, uses[l.ID].Used, now); err != nil {
			return nil, err
		}
	}
	a.Credits = a.Balance(now)
	return a, nil
}

// StoredAccount returns the account of uid as stored, with its leases out,
// or billing.ErrNotFound.
func (s *Store) StoredAccount(ctx context.Context, uid string) (*billing.Account, error) {
	if uid == "" {
		return nil, billing.ErrNotFound
	}
	snap, err := s.account(uid).Get(ctx)
	if err != nil {
		return nil, fmt.Errorf("get account %s: %w", uid, notFound(err))
	}
	return decodeAccount(snap)
}

// Provision returns the account of id.UID, creating it with
// billing.OpenAccount if absent. Concurrent first calls create it once: the
// losers' transactions retry and find it.
func (s *Store) Provision(ctx context.Context, id billing.Identity, now time.Time) (*billing.Account, bool, error) {
	var out *billing.Account
	var created bool
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		created = false
		snap, err := tx.Get(s.account(id.UID))
		if err == nil {
			out, err = decodeAccount(snap)
			return err
		}
		if status.Code(err) != codes.NotFound {
			return err
		}
		a := billing.OpenAccount(id, s.free, s.requireVerified, now)
		a.WatchBalance(s.catalog, now) // arms the low-balance notice
		if err := tx.Create(s.account(id.UID), a); err != nil {
			return err
		}
		s.writeEntries(tx, a)
		out, created = a, true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("provision %s: %w", id.UID, err)
	}
	return out, created, nil
}

// UpdateAccount applies fn to the account of uid in a transaction.
func (s *Store) UpdateAccount(ctx context.Context, uid string, fn func(*billing.Account) error) (*billing.Account, error) {
	var out *billing.Account
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		a, st, err := s.getAccount(ctx, tx, uid)
		if err != nil {
			return err
		}
		if err := fn(a); err != nil {
			return err
		}
		s.putAccount(tx, a, time.Now(), st)
		out = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("update account %s: %w", uid, err)
	}
	s.dispatch(ctx, out)
	return out, nil
}

// ApplyEvent runs fn on the account of uid and records eventID in the same
// transaction, unless eventID was recorded before.
func (s *Store) ApplyEvent(ctx context.Context, eventID, uid string, fn func(*billing.Account) error) (bool, error) {
	ev := s.fs.Collection(eventsCol).Doc(eventID)
	var applied bool
	var written *billing.Account
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		applied, written = false, nil
		if _, err := tx.Get(ev); err == nil {
			return nil
		} else if status.Code(err) != codes.NotFound {
			return err
		}
		a, st, err := s.getAccount(ctx, tx, uid)
		if err != nil {
			return err
		}
		if err := fn(a); err != nil {
			return err
		}
		now := time.Now()
		s.putAccount(tx, a, now, st)
		if err := tx.Create(ev, map[string]any{"uid": uid, "appliedAt": now, "expireAt": now.Add(eventRetention)}); err != nil {
			return err
		}
		applied, written = true, a
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("apply event %s to %s: %w", eventID, uid, err)
	}
	s.dispatch(ctx, written)
	return applied, nil
}

// AccountByCustomer finds the account linked to a payment customer id.
func (s *Store) AccountByCustomer(ctx context.Context, customerID string) (*billing.Account, error) {
	if customerID == "" {
		return nil, billing.ErrNotFound
	}
	snaps, err := s.fs.Collection(accountsCol).Where("customerId", "==", customerID).Limit(1).Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("find customer %s: %w", customerID, err)
	}
	if len(snaps) == 0 {
		return nil, billing.ErrNotFound
	}
	return decodeAccount(snaps[0])
}

// Overdue lists Free accounts whose next grant was due before before, as
// the tasks that continue their chains, ordered by due time then uid. It
// returns at most pageSize tasks and the cursor of the next page, "" at the
// end. Accounts whose chain has not started (no nextGrantAt: the Free grants
// wait for a verified email) are not read. It needs the composite index
// (plan, nextGrantAt) declared in firestore.indexes.json.
func (s *Store) Overdue(ctx context.Context, before time.Time, pageSize int, after string) ([]billing.GrantTask, string, error) {
	q := s.fs.Collection(accountsCol).Where("plan", "==", billing.PlanFree).
		Where("nextGrantAt", ">", time.Time{}).Where("nextGrantAt", "<", before).
		OrderBy("nextGrantAt", firestore.Asc).OrderBy(firestore.DocumentID, firestore.Asc).Limit(pageSize)
	if after != "" {
		at, uid, err := parseCursor(after)
		if err != nil {
			return nil, "", billing.Errorf(billing.CodeBadRequest, "bad cursor")
		}
		q = q.StartAfter(at, uid)
	}
	snaps, err := q.Documents(ctx).GetAll()
	if err != nil {
		return nil, "", fmt.Errorf("list overdue: %w", err)
	}
	var out []billing.GrantTask
	for _, snap := range snaps {
		a, err := decodeAccount(snap)
		if err != nil {
			return nil, "", err
		}
		if t, ok := a.NextGrant(); ok {
			out = append(out, t)
		}
	}
	next := ""
	if len(snaps) == pageSize {
		last := snaps[len(snaps)-1]
		at, _ := last.DataAt("nextGrantAt")
		ts, _ := at.(time.Time)
		next = ts.UTC().Format(time.RFC3339Nano) + "|" + last.Ref.ID
	}
	return out, next, nil
}

func parseCursor(c string) (time.Time, string, error) {
	ts, uid, ok := strings.Cut(c, "|")
	if !ok {
		return time.Time{}, "", errors.New("no separator")
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	return at, uid, err
}

// Ledger returns the newest limit entries of uid's ledger, newest first.
func (s *Store) Ledger(ctx context.Context, uid string, limit int) ([]billing.Entry, error) {
	snaps, err := s.account(uid).Collection(ledgerCol).OrderBy("at", firestore.Desc).Limit(limit).Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", uid, err)
	}
	out := make([]billing.Entry, 0, len(snaps))
	for _, snap := range snaps {
		var e billing.Entry
		if err := snap.DataTo(&e); err != nil {
			return nil, fmt.Errorf("decode ledger entry %s: %w", snap.Ref.ID, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Usage returns the credits spent per UTC day from from to to, inclusive,
// with a zero for each day without use: the usage documents of the
// months, the month the account carries (billing.Account.Usage), read with
// them at one time, and the use of leases still out, from their holders'
// journals.
func (s *Store) Usage(ctx context.Context, uid string, from, to time.Time) ([]billing.DayUsage, error) {
	from, to = from.UTC(), to.UTC()
	counts := map[string]int64{}
	routes := map[string]map[string]int64{}
	add := func(month string, days map[string]int64, perRoute map[string]map[string]int64) error {
		for d, n := range days {
			date, err := billing.UsageDate(month, d)
			if err != nil {
				return fmt.Errorf("usage %s: %w", uid, err)
			}
			counts[date] += n // "1" and "01" are the same day
		}
		for d, rs := range perRoute {
			date, err := billing.UsageDate(month, d)
			if err != nil {
				return fmt.Errorf("usage %s: %w", uid, err)
			}
			for route, n := range rs {
				if n == 0 {
					continue
				}
				if routes[date] == nil {
					routes[date] = map[string]int64{}
				}
				routes[date][route] += n
			}
		}
		return nil
	}
	refs := []*firestore.DocumentRef{s.account(uid)}
	var months []string
	for m := monthStart(from); !m.After(to); m = m.AddDate(0, 1, 0) {
		month, _ := billing.UsageKeys(m)
		months = append(months, month)
		refs = append(refs, s.account(uid).Collection(usageCol).Doc(month))
	}
	snaps, err := s.fs.GetAll(ctx, refs)
	if err != nil {
		return nil, fmt.Errorf("usage %s: %w", uid, err)
	}
	for i, snap := range snaps[1:] {
		if !snap.Exists() {
			continue
		}
		var doc struct {
			Days   map[string]int64            `firestore:"days"`
			Routes map[string]map[string]int64 `firestore:"routes"`
		}
		if err := snap.DataTo(&doc); err != nil {
			return nil, fmt.Errorf("decode usage %s: %w", snap.Ref.ID, err)
		}
		if err := add(months[i], doc.Days, doc.Routes); err != nil {
			return nil, err
		}
	}
	if !snaps[0].Exists() {
		return zeroDays(from, to, counts, routes), nil
	}
	a, err := decodeAccount(snaps[0])
	if err != nil {
		return nil, err
	}
	if u := a.Usage; u != nil && slices.Contains(months, u.Month) {
		if err := add(u.Month, u.Days, u.Routes); err != nil {
			return nil, err
		}
	}
	uses, err := s.liveUse(ctx, a)
	if err != nil {
		return nil, err
	}
	for _, u := range uses {
		for month, days := range u.Days {
			if err := add(month, days, u.Routes[month]); err != nil {
				return nil, err
			}
		}
	}
	return zeroDays(from, to, counts, routes), nil
}

// zeroDays lists the days from from to to with their counts and routes, a
// zero for a day without use.
func zeroDays(from, to time.Time, counts map[string]int64, routes map[string]map[string]int64) []billing.DayUsage {
	var out []billing.DayUsage
	for d := dayStart(from); !d.After(to); d = d.AddDate(0, 0, 1) {
		day := billing.Day(d)
		r := routes[day]
		if r == nil {
			r = map[string]int64{}
		}
		out = append(out, billing.DayUsage{Date: day, Credits: counts[day], Routes: r})
	}
	return out
}

func monthStart(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}
func dayStart(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// DebitKey debits cost credits from the account that owns the key hashed as
// hash: one key read and one transaction on the account (Charge, with no
// route).
func (s *Store) DebitKey(ctx context.Context, hash string, cost int64, now time.Time) (int64, error) {
	d, _, err := s.Charge(ctx, ChargeRequest{Hash: hash, Cost: cost, Now: now})
	return d.Remaining, err
}

// dayUse reads the credits counted on day in the usage document ref.
func dayUse(tx *firestore.Transaction, ref *firestore.DocumentRef, day string) (int64, error) {
	snap, err := tx.Get(ref)
	if status.Code(err) == codes.NotFound {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	v, err := snap.DataAt("days." + day)
	if err != nil {
		return 0, nil // no use that day
	}
	n, _ := v.(int64)
	return n, nil
}

// debitAttempts is how often a contended debit transaction is retried
// before the call fails as unavailable; a hot key retries more than the
// SDK's default of five.
const debitAttempts = 20

// CreateKey stores key under hash unless its owner already holds
// billing.MaxKeys unrevoked keys.
//
// A query in a transaction locks what it scans (the emulator: the whole
// collection), so everyone's key creations would contend: the owner's keys
// are counted outside the transaction, and the owner's lock document
// (accounts/{uid}/locks/keys), read and written in it, serialises one
// owner's creations: the one that loses is retried and counts again.
func (s *Store) CreateKey(ctx context.Context, hash string, key billing.APIKey) error {
	lock := s.account(key.UID).Collection("locks").Doc("keys")
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		if _, err := tx.Get(lock); err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		held, err := s.keysOf(key.UID).Documents(ctx).GetAll()
		if err != nil {
			return err
		}
		if len(held) >= billing.MaxKeys {
			return billing.ErrTooManyKeys
		}
		if err := tx.Set(lock, map[string]any{"at": key.CreatedAt}); err != nil {
			return err
		}
		return tx.Create(s.fs.Collection(keysCol).Doc(hash), key)
	})
	if err != nil {
		return fmt.Errorf("create key for %s: %w", key.UID, err)
	}
	return nil
}

func (s *Store) keysOf(uid string) firestore.Query {
	return s.fs.Collection(keysCol).Where("uid", "==", uid).Where("revoked", "==", false)
}

// Keys lists uid's unrevoked keys, newest first.
func (s *Store) Keys(ctx context.Context, uid string) ([]billing.APIKey, error) {
	snaps, err := s.keysOf(uid).Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("list keys of %s: %w", uid, err)
	}
	// The account records when its keys were last used.
	a, err := s.StoredAccount(ctx, uid)
	if err != nil && !errors.Is(err, billing.ErrNotFound) {
		return nil, err
	}
	out := make([]billing.APIKey, 0, len(snaps))
	for _, snap := range snaps {
		var k billing.APIKey
		if err := snap.DataTo(&k); err != nil {
			return nil, fmt.Errorf("decode key: %w", err)
		}
		if a != nil {
			k.LastUsedAt = a.LastUsed(k)
		}
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// RevokeKey revokes uid's key id and marks it for deletion (expireAt, a
// Firestore TTL field) keyRetention from now.
func (s *Store) RevokeKey(ctx context.Context, uid, id string) error {
	snaps, err := s.keysOf(uid).Where("id", "==", id).Limit(1).Documents(ctx).GetAll()
	if err != nil {
		return fmt.Errorf("find key %s: %w", id, err)
	}
	if len(snaps) == 0 {
		return billing.ErrNotFound
	}
	now := time.Now()
	// revokedAt is Firestore's own time, as the revocation listeners'
	// "since" is the wall clock's, whatever clock the caller runs on.
	if _, err := snaps[0].Ref.Update(ctx, []firestore.Update{{Path: "revoked", Value: true}, {Path: "revokedAt", Value: firestore.ServerTimestamp},
		{Path: "expireAt", Value: now.Add(keyRetention)}}); err != nil {
		return fmt.Errorf("revoke key %s: %w", id, err)
	}
	return nil
}

// UpdateKey runs fn on uid's unrevoked key id in a transaction and stores
// its name, expiry, scopes and limits.
func (s *Store) UpdateKey(ctx context.Context, uid, id string, fn func(*billing.APIKey) error) (billing.APIKey, error) {
	var out billing.APIKey
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		ref, k, err := s.ownKey(tx, uid, id)
		if err != nil {
			return err
		}
		if err := fn(&k); err != nil {
			return err
		}
		var expires any = firestore.Delete
		if !k.ExpiresAt.IsZero() {
			expires = k.ExpiresAt
		}
		var scopes any = firestore.Delete
		if len(k.Scopes) > 0 {
			scopes = k.Scopes
		}
		out = k
		return tx.Update(ref, []firestore.Update{{Path: "name", Value: k.Name}, {Path: "expiresAt", Value: expires},
			{Path: "scopes", Value: scopes}, {Path: "limits", Value: k.Limits}})
	})
	if err != nil {
		return billing.APIKey{}, fmt.Errorf("update key %s: %w", id, err)
	}
	return out, nil
}

// RollKey runs roll on uid's unrevoked key id and, in the same transaction,
// stores the old key as roll changed it (kept keyRetention past its end,
// a Firestore TTL on expireAt) and the new key under its hash.
func (s *Store) RollKey(ctx context.Context, uid, id string, roll func(*billing.APIKey) (string, billing.APIKey, error)) error {
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		ref, k, err := s.ownKey(tx, uid, id)
		if err != nil {
			return err
		}
		hash, next, err := roll(&k)
		if err != nil {
			return err
		}
		updates := []firestore.Update{{Path: "revoked", Value: k.Revoked}, {Path: "expiresAt", Value: k.ExpiresAt},
			{Path: "rolledTo", Value: k.RolledTo}, {Path: "expireAt", Value: k.ExpiresAt.Add(keyRetention)}}
		if k.Revoked { // rolled with no grace: the revocation listeners hear it, as a revoke
			updates = append(updates, firestore.Update{Path: "revokedAt", Value: firestore.ServerTimestamp})
		}
		if err := tx.Update(ref, updates); err != nil {
			return err
		}
		return tx.Create(s.fs.Collection(keysCol).Doc(hash), next)
	})
	if err != nil {
		return fmt.Errorf("roll key %s: %w", id, err)
	}
	return nil
}

// ownKey reads uid's unrevoked key id in tx.
func (s *Store) ownKey(tx *firestore.Transaction, uid, id string) (*firestore.DocumentRef, billing.APIKey, error) {
	snaps, err := tx.Documents(s.keysOf(uid).Where("id", "==", id).Limit(1)).GetAll()
	if err != nil {
		return nil, billing.APIKey{}, err
	}
	if len(snaps) == 0 {
		return nil, billing.APIKey{}, billing.ErrNotFound
	}
	var k billing.APIKey
	if err := snaps[0].DataTo(&k); err != nil {
		return nil, billing.APIKey{}, fmt.Errorf("decode key: %w", err)
	}
	return snaps[0].Ref, k, nil
}

// ClaimRate runs fn on the rate pool of the key hashed as hash
// (apiKeys/{hash}/limits/rate) in a transaction and stores it.
func (s *Store) ClaimRate(ctx context.Context, hash string, fn func(*billing.RatePool)) error {
	ref := s.fs.Collection(keysCol).Doc(hash).Collection("limits").Doc("rate")
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		var p billing.RatePool
		snap, err := tx.Get(ref)
		switch {
		case err == nil:
			if err := snap.DataTo(&p); err != nil {
				return fmt.Errorf("decode rate pool: %w", err)
			}
		case status.Code(err) != codes.NotFound:
			return err
		}
		fn(&p)
		return tx.Set(ref, p)
	}, firestore.MaxAttempts(debitAttempts))
	if err != nil {
		return fmt.Errorf("claim rate: %w", err)
	}
	return nil
}

// SavePlans writes the catalog to plans/{name}, readable by everyone.
func (s *Store) SavePlans(ctx context.Context, c billing.Catalog) error {
	bw := s.fs.BulkWriter(ctx)
	for _, p := range c.Plans {
		if _, err := bw.Set(s.fs.Collection(plansCol).Doc(p.Name), p); err != nil {
			return fmt.Errorf("save plan %s: %w", p.Name, err)
		}
	}
	bw.End()
	return nil
}

// getAccount reads the account of uid in tx and settles its expired credit
// leases (lease.go), so that a crashed instance's credits come back.
func (s *Store) getAccount(ctx context.Context, tx *firestore.Transaction, uid string) (*billing.Account, *settlement, error) {
	return s.accountAt(ctx, tx, uid, time.Now())
}

// putAccount writes a with its new ledger entries and notices, after the
// low-balance watch has looked at its balance at now.
func (s *Store) putAccount(tx *firestore.Transaction, a *billing.Account, now time.Time, st *settlement) {
	a.WatchBalance(s.catalog, now)
	s.foldUsage(tx, a, st)
	// Set and Create only fail on encoding, which the account's types rule out.
	_ = tx.Set(s.account(a.UID), a)
	s.writeEntries(tx, a)
	s.writeNotices(tx, a)
	s.writeFences(tx, st)
}

func (s *Store) writeEntries(tx *firestore.Transaction, a *billing.Account) {
	for _, e := range a.Entries() {
		_ = tx.Set(s.account(a.UID).Collection(ledgerCol).Doc(e.ID), e)
	}
}

func decodeAccount(snap *firestore.DocumentSnapshot) (*billing.Account, error) {
	var a billing.Account
	if err := snap.DataTo(&a); err != nil {
		return nil, fmt.Errorf("decode account %s: %w", snap.Ref.ID, err)
	}
	return &a, nil
}

func notFound(err error) error {
	if status.Code(err) == codes.NotFound {
		return billing.ErrNotFound
	}
	return err
}
