package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paymeter/paymeter/billing"
)

// Credit leases (billing.Lease) live on the account; what their holder has
// spent lives in accounts/{uid}/leases/{leaseId}.used, written before any
// call it counts is answered. Settling a lease reads that figure in the same
// transaction that gives the rest back, and deletes the document.
const leasesCol = "leases"

// ErrLeaseGone is returned by RecordLeaseUses when a lease was settled
// already (it expired and another transaction settled it): nothing was
// recorded, and the calls it would have counted must not be answered.
var ErrLeaseGone = errors.New("lease settled already")

type leaseDoc struct {
	Used      int64     `firestore:"used"`
	Amount    int64     `firestore:"amount"`
	Owner     string    `firestore:"owner"`
	ExpiresAt time.Time `firestore:"expiresAt"`
}

func (s *Store) lease(uid, id string) *firestore.DocumentRef {
	return s.account(uid).Collection(leasesCol).Doc(id)
}

// accountAt reads the account of uid in tx and settles, with the use their
// documents record, its leases expired at now and those named in settle.
// It only reads: putAccount deletes the settled leases' documents.
func (s *Store) accountAt(tx *firestore.Transaction, uid string, now time.Time, settle ...string) (*billing.Account, error) {
	if uid == "" {
		return nil, billing.ErrNotFound
	}
	snap, err := tx.Get(s.account(uid))
	if err != nil {
		return nil, notFound(err)
	}
	a, err := decodeAccount(snap)
	if err != nil {
		return nil, err
	}
	ids := settle
	for _, l := range a.ExpiredLeases(now) {
		ids = append(ids, l.ID)
	}
	if len(ids) == 0 {
		return a, nil
	}
	refs := make([]*firestore.DocumentRef, len(ids))
	for i, id := range ids {
		refs[i] = s.lease(uid, id)
	}
	snaps, err := tx.GetAll(refs)
	if err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	for i, snap := range snaps {
		var d leaseDoc
		if snap.Exists() {
			if err := snap.DataTo(&d); err != nil {
				return nil, fmt.Errorf("decode lease %s: %w", ids[i], err)
			}
		}
		// ErrNotFound: listed twice, or not held (settled already).
		if _, err := a.SettleLease(ids[i], d.Used, now); err != nil && !errors.Is(err, billing.ErrNotFound) {
			return nil, err
		}
	}
	return a, nil
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
	TTL            time.Duration
	// TouchKey, if set, is the hash of a key whose lastUsedAt becomes now.
	TouchKey string
}

// TakeLease takes a lease in one transaction, which first settles the
// account's expired leases. It returns the lease and the balance left
// beside it; billing.ErrInsufficientCredits when the balance is zero and
// billing.ErrNotFound for an unknown account.
func (s *Store) TakeLease(ctx context.Context, r LeaseRequest, now time.Time) (billing.Lease, int64, error) {
	var l billing.Lease
	var balance int64
	var written *billing.Account
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		written = nil
		a, err := s.accountAt(tx, r.UID, now)
		if err != nil {
			return err
		}
		l, err = a.TakeLease(r.ID, r.Owner, r.Want, r.TTL, now)
		if errors.Is(err, billing.ErrInsufficientCredits) {
			// Keep the settlements and the exhausted notice, and answer 402.
			if refused := a.Refused(r.Want, now); refused || len(a.SettledLeases()) > 0 {
				s.putAccount(tx, a, now)
				balance, written = a.Balance(now), a
				return nil
			}
		}
		if err != nil {
			return err
		}
		s.putAccount(tx, a, now)
		written = a
		l.Watch = a.LowBalanceWatch(s.catalog, now)
		if err := tx.Create(s.lease(r.UID, l.ID), leaseDoc{Amount: l.Amount, Owner: l.Owner, ExpiresAt: l.ExpiresAt}); err != nil {
			return err
		}
		if r.TouchKey != "" {
			if err := tx.Update(s.fs.Collection(keysCol).Doc(r.TouchKey), []firestore.Update{{Path: "lastUsedAt", Value: now}}); err != nil {
				return err
			}
		}
		balance = a.Balance(now)
		return nil
	}, firestore.MaxAttempts(debitAttempts))
	if err != nil {
		return billing.Lease{}, 0, fmt.Errorf("take lease on %s: %w", r.UID, err)
	}
	s.dispatch(ctx, written)
	if l.ID == "" {
		return billing.Lease{}, balance, billing.ErrInsufficientCredits
	}
	return l, balance, nil
}

// LeaseUse is what one lease has spent so far (Used) and since its last
// record (Delta), and the low-balance notice this use made, if any
// (billing.LowBalanceWatch), written with it.
type LeaseUse struct {
	UID, ID     string
	Used, Delta int64
	Notice      *billing.Notice
	// Routes is Delta by route, for the calls made on one.
	Routes map[string]int64
}

// RecordLeaseUses records the use of several leases, of any accounts, in
// one commit without a transaction: each lease document's total and each
// account's usage of the day. It records all or nothing, and returns
// ErrLeaseGone, recording nothing, when any of the leases was settled
// already.
func (s *Store) RecordLeaseUses(ctx context.Context, uses []LeaseUse, now time.Time) error {
	month, dayKey := billing.UsageKeys(now)
	//lint:ignore SA1019 one commit of plain writes, no reads: a transaction would add an RPC.
	b := s.fs.Batch()
	perAccount := map[string]int64{}
	perRoute := map[string]map[string]any{}
	var uids []string
	for _, u := range uses {
		b.Update(s.lease(u.UID, u.ID), []firestore.Update{{Path: "used", Value: u.Used}})
		if _, ok := perAccount[u.UID]; !ok {
			uids = append(uids, u.UID)
		}
		perAccount[u.UID] += u.Delta
		for route, n := range u.Routes {
			if perRoute[u.UID] == nil {
				perRoute[u.UID] = map[string]any{}
			}
			prev, _ := perRoute[u.UID][route].(int64)
			perRoute[u.UID][route] = prev + n
		}
	}
	for _, uid := range uids { // one write per usage document
		usage := s.account(uid).Collection(usageCol).Doc(month)
		fields := map[string]any{"days": map[string]any{dayKey: firestore.Increment(perAccount[uid])}}
		if routes := perRoute[uid]; len(routes) > 0 {
			for route, n := range routes {
				routes[route] = firestore.Increment(n.(int64))
			}
			fields["routes"] = map[string]any{dayKey: routes}
		}
		b.Set(usage, fields, firestore.MergeAll)
	}
	var notices []billing.NoticeTask
	for _, u := range uses {
		if n := u.Notice; n != nil {
			b.Set(s.outbox(n.UID, n.ID), noticeFields(*n), firestore.MergeAll)
			notices = append(notices, billing.NoticeTask{UID: n.UID, ID: n.ID})
		}
	}
	if _, err := b.Commit(ctx); err != nil {
		if status.Code(err) == codes.NotFound {
			return fmt.Errorf("record use of %d leases: %w", len(uses), ErrLeaseGone)
		}
		return fmt.Errorf("record use of %d leases: %w", len(uses), err)
	}
	if len(notices) > 0 && s.onNotices != nil {
		s.onNotices(ctx, notices)
	}
	return nil
}

// ReturnLease settles leases ids of uid in one transaction: the use their
// documents record stays spent, the rest goes back to the balance. It
// returns the balance after; returning a lease settled already changes
// nothing.
func (s *Store) ReturnLease(ctx context.Context, uid string, now time.Time, ids ...string) (int64, error) {
	var balance int64
	var written *billing.Account
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		written = nil
		a, err := s.accountAt(tx, uid, now, ids...)
		if err != nil {
			return err
		}
		balance = a.Balance(now)
		if len(a.SettledLeases()) == 0 {
			return nil // nothing to write
		}
		s.putAccount(tx, a, now)
		written = a
		return nil
	}, firestore.MaxAttempts(debitAttempts))
	if err != nil {
		return 0, fmt.Errorf("return leases %v of %s: %w", ids, uid, err)
	}
	s.dispatch(ctx, written)
	return balance, nil
}
