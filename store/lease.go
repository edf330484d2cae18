package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paymeter/paymeter/billing"
)

// Credit leases (billing.Lease) live on the account; what their holders
// have spent lives in one journal document per instance,
// leaseJournals/{owner}, which the instance rewrites with one write per
// flush, whatever the number of accounts in it, before it answers any call
// that the flush counts. A lease is settled by an account transaction: its
// holder's return (with the use it confirmed in its journal), or, once it
// has expired, any transaction on the account, which reads the use from the
// holder's journal and fences it (gone.{lease}) so that a late write of the
// holder (a frozen instance) fails instead of recording calls nobody will
// be charged for. A lease expires at its ExpiresAt unless its holder's last
// journal write promised it alive beyond (aliveUntil, billing.Lease.Renewed):
// so an instance that keeps writing keeps all its leases with no write on
// any account, and one that stops (crashed, frozen) loses them a lease
// lifetime after its last write. Daily usage is written to the account's usage documents
// when a lease is settled; Usage and LiveAccount add the journals' use of
// the leases still out.
const journalsCol = "leaseJournals"

// journalRetention is how long a journal outlives its last write (a TTL
// policy on expireAt): an instance gone for a day has nothing left to settle.
const journalRetention = 24 * time.Hour

// ErrJournalMoved is returned by WriteJournal when the journal is not as
// the writer last saw it (another transaction fenced one of its leases, or
// an earlier write of its own landed unseen): nothing was written; read it
// again with ReadJournal.
var ErrJournalMoved = errors.New("lease journal changed")

// LeaseUse is what a lease has spent: Used credits in all, Days of them per
// usage document and day (billing.UsageKeys), and Routes of them per usage
// document, day and route, for the calls made on one.
type LeaseUse struct {
	UID    string                                 `firestore:"uid"`
	ID     string                                 `firestore:"-"`
	Used   int64                                  `firestore:"used"`
	Days   map[string]map[string]int64            `firestore:"days"`
	Routes map[string]map[string]map[string]int64 `firestore:"routes,omitempty"`
	// LastUse is when its last call recorded was admitted: a lease unused
	// for reclaimIdle may be taken back by a lease transaction that is short.
	LastUse time.Time `firestore:"lastUse,omitempty"`
	// Notice is the low-balance notice this use made, if any
	// (billing.LowBalanceWatch), written in the same commit; not journaled.
	Notice *billing.Notice `firestore:"-"`
}

// Journal is an instance's journal as read.
type Journal struct {
	Seq    int64
	Leases map[string]LeaseUse // by lease id
	Gone   map[string]bool     // leases settled by another transaction
	// Updated is the journal's update time, which the next write expects;
	// zero when there is no journal.
	Updated time.Time
	// AliveUntil is how long its last write keeps the instance's leases.
	AliveUntil time.Time
}

type journalDoc struct {
	Seq        int64               `firestore:"seq"`
	Leases     map[string]LeaseUse `firestore:"leases"`
	Gone       map[string]bool     `firestore:"gone"`
	AliveUntil time.Time           `firestore:"aliveUntil"`
	ExpireAt   time.Time           `firestore:"expireAt"`
}

func (s *Store) journal(owner string) *firestore.DocumentRef {
	return s.fs.Collection(journalsCol).Doc(owner)
}

// JournalWrite is one flush of an instance.
type JournalWrite struct {
	Owner string
	Seq   int64
	// After is the update time the journal must still have; zero: there
	// must be no journal yet.
	After time.Time
	// Uses are the leases' totals, replacing what the journal had.
	Uses []LeaseUse
	// Forget are leases settled already, whose entries go.
	Forget []string
	Now    time.Time
	// AliveUntil renews every lease of the instance until then
	// (billing.Lease.Renewed).
	AliveUntil time.Time
}

// WriteJournal writes w as one document write and returns the journal's
// new update time. It returns ErrJournalMoved, writing nothing, when the
// journal's update time is not w.After.
func (s *Store) WriteJournal(ctx context.Context, w JournalWrite) (time.Time, error) {
	ref := s.journal(w.Owner)
	//lint:ignore SA1019 one commit of plain writes, no reads: a transaction would add an RPC.
	b := s.fs.Batch()
	if w.After.IsZero() {
		d := journalDoc{Seq: w.Seq, Leases: map[string]LeaseUse{}, Gone: map[string]bool{}, AliveUntil: w.AliveUntil,
			ExpireAt: w.Now.Add(journalRetention)}
		for _, u := range w.Uses {
			d.Leases[u.ID] = u
		}
		b.Create(ref, d)
	} else {
		ups := make([]firestore.Update, 0, len(w.Uses)+len(w.Forget)+3)
		ups = append(ups, firestore.Update{Path: "seq", Value: w.Seq},
			firestore.Update{Path: "aliveUntil", Value: w.AliveUntil},
			firestore.Update{Path: "expireAt", Value: w.Now.Add(journalRetention)})
		for _, u := range w.Uses {
			ups = append(ups, firestore.Update{FieldPath: firestore.FieldPath{"leases", u.ID}, Value: u})
		}
		for _, id := range w.Forget {
			ups = append(ups, firestore.Update{FieldPath: firestore.FieldPath{"leases", id}, Value: firestore.Delete},
				firestore.Update{FieldPath: firestore.FieldPath{"gone", id}, Value: firestore.Delete})
		}
		b.Update(ref, ups, firestore.LastUpdateTime(w.After))
	}
	// The low-balance notices these uses made go in the same commit (one
	// more document each; rare).
	var notices []billing.NoticeTask
	for _, u := range w.Uses {
		if n := u.Notice; n != nil {
			b.Set(s.outbox(n.UID, n.ID), noticeFields(*n), firestore.MergeAll)
			notices = append(notices, billing.NoticeTask{UID: n.UID, ID: n.ID})
		}
	}
	res, err := b.Commit(ctx)
	switch status.Code(err) {
	case codes.OK:
		if len(notices) > 0 && s.onNotices != nil {
			s.onNotices(ctx, notices)
		}
		return res[0].UpdateTime, nil
	case codes.FailedPrecondition, codes.AlreadyExists, codes.NotFound:
		return time.Time{}, fmt.Errorf("write journal %s: %w", w.Owner, ErrJournalMoved)
	default:
		return time.Time{}, fmt.Errorf("write journal %s: %w", w.Owner, err)
	}
}

// ReadJournal returns owner's journal; a zero Journal when there is none.
func (s *Store) ReadJournal(ctx context.Context, owner string) (Journal, error) {
	snap, err := s.journal(owner).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return Journal{}, nil
	}
	if err != nil {
		return Journal{}, fmt.Errorf("read journal %s: %w", owner, err)
	}
	return decodeJournal(snap)
}

func decodeJournal(snap *firestore.DocumentSnapshot) (Journal, error) {
	if !snap.Exists() {
		return Journal{}, nil
	}
	var d journalDoc
	if err := snap.DataTo(&d); err != nil {
		return Journal{}, fmt.Errorf("decode journal %s: %w", snap.Ref.ID, err)
	}
	for id, u := range d.Leases {
		u.ID = id
		d.Leases[id] = u
	}
	return Journal{Seq: d.Seq, Leases: d.Leases, Gone: d.Gone, Updated: snap.UpdateTime, AliveUntil: d.AliveUntil}, nil
}

// settlement is what an account transaction settled beside the account:
// the usage its leases recorded and the fences on their holders' journals.
type settlement struct {
	usage  map[string]map[string]int64            // month → day → credits
	routes map[string]map[string]map[string]int64 // month → day → route → credits
	fences map[string][]string                    // owner → leases settled from its journal
}

// add counts n credits spent at t (negative: given back), on route too
// unless it is "".
func (st *settlement) add(route string, t time.Time, n int64) {
	month, day := billing.UsageKeys(t)
	use := LeaseUse{Days: map[string]map[string]int64{month: {day: n}}}
	if route != "" {
		use.Routes = map[string]map[string]map[string]int64{month: {day: {route: n}}}
	}
	st.count(use)
}

func (st *settlement) count(u LeaseUse) {
	for month, days := range u.Routes {
		for day, rs := range days {
			for route, n := range rs {
				if n == 0 {
					continue
				}
				if st.routes == nil {
					st.routes = map[string]map[string]map[string]int64{}
				}
				if st.routes[month] == nil {
					st.routes[month] = map[string]map[string]int64{}
				}
				if st.routes[month][day] == nil {
					st.routes[month][day] = map[string]int64{}
				}
				st.routes[month][day][route] += n
			}
		}
	}
	days := u.Days
	for month, ds := range days {
		for day, n := range ds {
			if n == 0 {
				continue
			}
			if st.usage == nil {
				st.usage = map[string]map[string]int64{}
			}
			if st.usage[month] == nil {
				st.usage[month] = map[string]int64{}
			}
			st.usage[month][day] += n
		}
	}
}

// accountAt reads the account of uid in tx and settles its leases: those in
// own with the use their holder gives (it confirmed it in its journal), and
// those expired at now with the use their holders' journals record. It only
// reads: putAccount writes the account, the usage and the fences.
func (s *Store) accountAt(ctx context.Context, tx *firestore.Transaction, uid string, now time.Time, own ...LeaseUse) (*billing.Account, *settlement, error) {
	if uid == "" {
		return nil, nil, billing.ErrNotFound
	}
	snap, err := tx.Get(s.account(uid))
	if err != nil {
		return nil, nil, notFound(err)
	}
	a, err := decodeAccount(snap)
	if err != nil {
		return nil, nil, err
	}
	st := &settlement{}
	for _, u := range own {
		// ErrNotFound: listed twice, or settled already (it expired).
		if _, err := a.SettleLease(u.ID, u.Used, now); err == nil {
			st.count(u)
		} else if !errors.Is(err, billing.ErrNotFound) {
			return nil, nil, err
		}
	}
	expired := a.ExpiredLeases(now)
	if len(expired) == 0 {
		return a, st, nil
	}
	var journaled []billing.Lease
	for _, l := range expired {
		if l.Owner == billing.HoldOwner {
			// An expired reservation gives everything back: it has no journal.
			if _, err := a.SettleLease(l.ID, 0, now); err != nil {
				return nil, nil, err
			}
			continue
		}
		journaled = append(journaled, l)
	}
	byOwner, owners := leasesByOwner(journaled)
	// Most holders are alive and renew their leases with every flush: their
	// journals are read outside the transaction, so that it locks no
	// document a holder writes. Only the journals of silent holders are read
	// again in it, to settle and fence their leases.
	owners, err = s.silentHolders(ctx, owners, byOwner, now)
	if err != nil {
		return nil, nil, err
	}
	// A write that landed meanwhile renews its leases: they stay.
	if _, err := s.settleFromJournals(tx, a, st, byOwner, owners, now, Journal.renews); err != nil {
		return nil, nil, err
	}
	return a, st, nil
}

// leasesByOwner groups leases by their holder, whose names it returns
// sorted.
func leasesByOwner(leases []billing.Lease) (map[string][]billing.Lease, []string) {
	byOwner := map[string][]billing.Lease{}
	var owners []string
	for _, l := range leases {
		if _, ok := byOwner[l.Owner]; !ok {
			owners = append(owners, l.Owner)
		}
		byOwner[l.Owner] = append(byOwner[l.Owner], l)
	}
	sort.Strings(owners)
	return byOwner, owners
}

func (s *Store) journalRefs(owners []string) []*firestore.DocumentRef {
	refs := make([]*firestore.DocumentRef, len(owners))
	for i, o := range owners {
		refs[i] = s.journal(o)
	}
	return refs
}

// settleFromJournals reads the journals of owners in tx and settles their
// leases in byOwner that keep does not keep, with the use their journals
// record, fencing them (st.fences): a holder's write landing later fails.
// It returns how many it settled.
func (s *Store) settleFromJournals(tx *firestore.Transaction, a *billing.Account, st *settlement, byOwner map[string][]billing.Lease,
	owners []string, now time.Time, keep func(Journal, billing.Lease, time.Time) bool) (int, error) {
	if len(owners) == 0 {
		return 0, nil
	}
	snaps, err := tx.GetAll(s.journalRefs(owners))
	if err != nil {
		return 0, fmt.Errorf("read lease journals: %w", err)
	}
	n := 0
	for i, snap := range snaps {
		j, err := decodeJournal(snap)
		if err != nil {
			return 0, err
		}
		for _, l := range byOwner[owners[i]] {
			if keep(j, l, now) {
				continue
			}
			u := j.Leases[l.ID]
			if _, err := a.SettleLease(l.ID, u.Used, now); err != nil {
				return 0, err
			}
			st.count(u)
			if st.fences == nil {
				st.fences = map[string][]string{}
			}
			st.fences[owners[i]] = append(st.fences[owners[i]], l.ID)
			n++
		}
	}
	return n, nil
}

// renews reports whether the journal keeps l, which it lists, alive at now.
// A lease its holder never recorded is not renewed: the holder may not know
// it holds it (a lease transaction that committed unseen), and it must
// come back a lease lifetime after it was taken.
func (j Journal) renews(l billing.Lease, now time.Time) bool {
	_, listed := j.Leases[l.ID]
	return listed && l.Renewed(now, j.AliveUntil)
}

// silentHolders returns, sorted, the owners whose journals renew none of
// their expired leases at now, read outside any transaction: a journal seen
// renewing a lease only ever renews it further.
func (s *Store) silentHolders(ctx context.Context, owners []string, leases map[string][]billing.Lease, now time.Time) ([]string, error) {
	snaps, err := s.fs.GetAll(ctx, s.journalRefs(owners))
	if err != nil {
		return nil, fmt.Errorf("read lease journals: %w", err)
	}
	var silent []string
	for i, snap := range snaps {
		j, err := decodeJournal(snap)
		if err != nil {
			return nil, err
		}
		for _, l := range leases[owners[i]] {
			if !j.renews(l, now) {
				silent = append(silent, owners[i])
				break
			}
		}
	}
	sort.Strings(silent)
	return silent, nil
}

// reclaimIdle is how long a lease must have gone unused before a lease
// transaction that is short of credits takes it back from its holder.
const reclaimIdle = 5 * time.Second

// reclaimIdle settles, in tx, the leases of a held by instances other than
// taker that have gone unused for reclaimIdle (by their journals), with the
// use their journals record, and fences them: an instance keeps an idle
// lease for LEASE_IDLE, and an account near the end of its credits must not
// answer 402 on one instance while they sit on another. A call its holder
// admits on such a lease meanwhile is answered 503 and not charged (its
// write fails on the fence). It returns how many it settled.
func (s *Store) reclaimIdle(tx *firestore.Transaction, a *billing.Account, st *settlement, taker string, now time.Time) (int, error) {
	var others []billing.Lease
	for _, l := range a.Leases {
		if l.Owner != taker && l.Owner != billing.HoldOwner && now.Sub(l.TakenAt) >= reclaimIdle {
			others = append(others, l)
		}
	}
	byOwner, owners := leasesByOwner(others)
	inUse := func(j Journal, l billing.Lease, now time.Time) bool {
		u, listed := j.Leases[l.ID]
		return listed && now.Sub(u.LastUse) < reclaimIdle
	}
	return s.settleFromJournals(tx, a, st, byOwner, owners, now, inUse)
}

// foldUsage moves the usage st counted into a, which carries the latest
// month of use (billing.Account.Usage): a debit or a settlement in that
// month costs no write beside the account's. When a later month begins,
// the month a carried goes to its usage document first; the use of an
// earlier month (a lease settled after the month turned) goes straight to
// that month's document.
func (s *Store) foldUsage(tx *firestore.Transaction, a *billing.Account, st *settlement) {
	if st == nil {
		return
	}
	months := map[string]bool{}
	for m := range st.usage {
		months[m] = true
	}
	for m := range st.routes {
		months[m] = true
	}
	for _, m := range slices.Sorted(maps.Keys(months)) {
		if a.Usage != nil && m < a.Usage.Month {
			s.addUsageDoc(tx, a.UID, m, st.usage[m], st.routes[m])
			continue
		}
		if a.Usage != nil && m > a.Usage.Month {
			s.addUsageDoc(tx, a.UID, a.Usage.Month, a.Usage.Days, a.Usage.Routes)
			a.Usage = nil
		}
		if a.Usage == nil {
			a.Usage = &billing.MonthUsage{Month: m}
		}
		for day, n := range st.usage[m] {
			a.Usage.AddDay(day, n)
		}
		for day, rs := range st.routes[m] {
			for route, n := range rs {
				a.Usage.AddRoute(day, route, n)
			}
		}
	}
}

// addUsageDoc adds days and routes (month's use, per day field) to the
// usage document of month.
func (s *Store) addUsageDoc(tx *firestore.Transaction, uid, month string, days map[string]int64, routes map[string]map[string]int64) {
	fields := map[string]any{}
	if len(days) > 0 {
		inc := map[string]any{}
		for day, n := range days {
			inc[day] = firestore.Increment(n)
		}
		fields["days"] = inc
	}
	if len(routes) > 0 {
		perDay := map[string]any{}
		for day, rs := range routes {
			inc := map[string]any{}
			for route, n := range rs {
				inc[route] = firestore.Increment(n)
			}
			perDay[day] = inc
		}
		fields["routes"] = perDay
	}
	if len(fields) > 0 {
		_ = tx.Set(s.account(uid).Collection(usageCol).Doc(month), fields, firestore.MergeAll)
	}
}

// writeFences fences the leases that an account transaction settled from
// their holders' journals: a holder's write landing later fails.
func (s *Store) writeFences(tx *firestore.Transaction, st *settlement) {
	if st == nil {
		return
	}
	for owner, ids := range st.fences {
		gone := map[string]any{}
		leases := map[string]any{}
		for _, id := range ids {
			gone[id] = true
			leases[id] = firestore.Delete
		}
		_ = tx.Set(s.journal(owner), map[string]any{"gone": gone, "leases": leases}, firestore.MergeAll)
	}
}

// Key returns the API key stored under hash, revoked or not, or
// billing.ErrInvalidAPIKey when there is none.
func (s *Store) Key(ctx context.Context, hash string) (billing.APIKey, error) {
	snap, err := s.fs.Collection(keysCol).Doc(hash).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return billing.APIKey{}, billing.ErrInvalidAPIKey
	}
	if err != nil {
		return billing.APIKey{}, fmt.Errorf("get key: %w", err)
	}
	var key billing.APIKey
	if err := snap.DataTo(&key); err != nil {
		return billing.APIKey{}, fmt.Errorf("decode key: %w", err)
	}
	return key, nil
}

// LeaseRequest asks for a lease of up to Want credits on the account UID.
type LeaseRequest struct {
	UID, ID, Owner string
	Want           int64
	// Half caps the lease at half the balance, or Need if that is more:
	// the holder has not seen the balance yet (its first lease).
	Half bool
	Need int64
	TTL  time.Duration
	// KeyID is the key the lease is taken for: the account records its
	// use (billing.Account.UsedKey).
	KeyID string
	// Settle are the holder's own leases on the account to settle first,
	// with the use it confirmed in its journal.
	Settle []LeaseUse
	// Ahead asks for the next lease while the holder's current one still
	// serves: a refusal makes no credits-exhausted notice.
	Ahead bool
}

// Size is the lease r asks for beside balance.
func (r LeaseRequest) Size(balance int64) int64 {
	if !r.Half {
		return r.Want
	}
	return min(r.Want, max(r.Need, balance/2, 1))
}

// Taken is the outcome of TakeLease.
type Taken struct {
	Lease billing.Lease
	// Balance is the balance left beside every lease; Leased the credits
	// out on the account's other leases (spent or not).
	Balance, Leased int64
}

// TakeLease takes a lease in one transaction, which first settles r.Settle
// and the account's expired leases. It returns
// billing.ErrInsufficientCredits (with the balance) when the balance is
// zero and billing.ErrNotFound for an unknown account.
func (s *Store) TakeLease(ctx context.Context, r LeaseRequest, now time.Time) (Taken, error) {
	var out Taken
	var written *billing.Account
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		out, written = Taken{}, nil
		a, st, err := s.accountAt(ctx, tx, r.UID, now, r.Settle...)
		if err != nil {
			return err
		}
		l, err := a.TakeLease(r.ID, r.Owner, r.Size(a.Balance(now)), r.TTL, now)
		if errors.Is(err, billing.ErrInsufficientCredits) && !r.Ahead {
			// Credits idle on other instances' leases come back first.
			n, rerr := s.reclaimIdle(tx, a, st, r.Owner, now)
			if rerr != nil {
				return rerr
			}
			if n > 0 {
				l, err = a.TakeLease(r.ID, r.Owner, r.Size(a.Balance(now)), r.TTL, now)
			}
		}
		if errors.Is(err, billing.ErrInsufficientCredits) {
			// Keep the settlements and the exhausted notice, and answer 402.
			if refused := !r.Ahead && a.Refused(r.Want, now); refused || len(a.SettledLeases()) > 0 {
				s.putAccount(tx, a, now, st)
				written = a
			}
			out.Balance, out.Leased = a.Balance(now), a.Leased()
			return nil
		}
		if err != nil {
			return err
		}
		a.UsedKey(r.KeyID, now)
		s.putAccount(tx, a, now, st)
		written = a
		l.Watch = a.LowBalanceWatch(s.catalog, now)
		out = Taken{Lease: l, Balance: a.Balance(now), Leased: a.Leased() - l.Amount}
		return nil
	}, firestore.MaxAttempts(debitAttempts))
	if err != nil {
		return Taken{}, fmt.Errorf("take lease on %s: %w", r.UID, err)
	}
	s.dispatch(ctx, written)
	if out.Lease.ID == "" {
		return out, billing.ErrInsufficientCredits
	}
	return out, nil
}

// ReturnLease settles uid's leases uses, which their holder gives back
// with the use it confirmed in its journal, in one transaction: that use
// stays spent (and is counted in the usage of its days), the rest goes back
// to the balance. It returns the balance after; returning a lease settled
// already changes nothing.
func (s *Store) ReturnLease(ctx context.Context, uid string, now time.Time, uses ...LeaseUse) (int64, error) {
	var balance int64
	var written *billing.Account
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		written = nil
		a, st, err := s.accountAt(ctx, tx, uid, now, uses...)
		if err != nil {
			return err
		}
		balance = a.Balance(now)
		if len(a.SettledLeases()) == 0 {
			return nil // nothing to write
		}
		s.putAccount(tx, a, now, st)
		written = a
		return nil
	}, firestore.MaxAttempts(debitAttempts))
	if err != nil {
		return 0, fmt.Errorf("return leases of %s: %w", uid, err)
	}
	s.dispatch(ctx, written)
	return balance, nil
}

// liveUse returns the use that the journals record for a's leases that are
// still out, read outside any transaction: for display (LiveAccount, Usage),
// never to settle.
func (s *Store) liveUse(ctx context.Context, a *billing.Account) (map[string]LeaseUse, error) {
	var refs []*firestore.DocumentRef
	seen := map[string]bool{}
	for _, l := range a.Leases {
		if !seen[l.Owner] && l.Owner != billing.HoldOwner {
			seen[l.Owner] = true
			refs = append(refs, s.journal(l.Owner))
		}
	}
	if len(refs) == 0 {
		return nil, nil
	}
	snaps, err := s.fs.GetAll(ctx, refs)
	if err != nil {
		return nil, fmt.Errorf("read lease journals of %s: %w", a.UID, err)
	}
	out := map[string]LeaseUse{}
	for _, snap := range snaps {
		j, err := decodeJournal(snap)
		if err != nil {
			return nil, err
		}
		for _, l := range a.Leases {
			if u, ok := j.Leases[l.ID]; ok && u.UID == a.UID {
				out[l.ID] = u
			}
		}
	}
	return out, nil
}

// WatchRevocations calls revoked with the hash of every key revoked at or
// after since, first those revoked already, then each as it is revoked,
// until ctx is done or the listener fails; it returns that error. Each
// revocation costs a watcher one document read.
func (s *Store) WatchRevocations(ctx context.Context, since time.Time, revoked func(hash string)) error {
	it := s.fs.Collection(keysCol).Where("revokedAt", ">=", since).Snapshots(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if err != nil {
			return fmt.Errorf("watch revocations: %w", err)
		}
		for _, ch := range snap.Changes {
			if ch.Kind != firestore.DocumentRemoved {
				revoked(ch.Doc.Ref.ID)
			}
		}
	}
}
