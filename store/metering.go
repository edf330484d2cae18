package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paymeter/paymeter/billing"
)

// The metered API's records: idempotent answers (idempotency/{id}, a
// Firestore TTL on expireAt), refunds (accounts/{uid}/refunds/{requestId},
// so that a call is refunded once) and reservations
// (reservations/{id}, their credits held on the account as a lease).
const (
	idempotencyCol  = "idempotency"
	refundsCol      = "refunds"
	reservationsCol = "reservations"
)

// refundRetention is how long a refund's record is kept (a TTL on expireAt).
const refundRetention = 7 * 24 * time.Hour

// IdempotencyID is the document id of the answer to the idempotency key
// idem used with the API key hashed as keyHash: neither is stored in clear.
func IdempotencyID(keyHash, idem string) string {
	sum := sha256.Sum256([]byte(keyHash + "\n" + idem))
	return hex.EncodeToString(sum[:])
}

// Idem names an idempotent request: its answer's id (IdempotencyID), method
// and path.
type Idem struct {
	ID, Method, Path string
}

// ChargeRequest is one metered call to debit.
type ChargeRequest struct {
	Hash string // the API key's hash
	// Key, if set, is the key as the caller read and admitted it
	// (functions' admitKey), so that it is not read again.
	Key       *billing.APIKey
	Cost      int64
	Route     string // the usage counts it under this route; "" under none
	RequestID string
	Now       time.Time
	// Idem, if set, makes the call idempotent: a stored answer is returned
	// instead of debiting, and otherwise Answer's is stored with the debit.
	Idem *Idem
	// Answer is the answer to store with the debit, given the charge; nil
	// stores a pending answer, completed later by SaveAnswer.
	Answer func(billing.Debited) billing.Answer
}

// Charge debits the call's cost from the account that owns the key, counts
// it in the day's usage (in all and for its route) and, for an idempotent
// call, stores its answer, all in one transaction. When an answer is stored
// already it debits nothing and returns it (pending or not); concurrent
// repeats of one key are serialised by the transaction on that answer's
// document. It returns billing.ErrInvalidAPIKey, ErrInsufficientCredits and
// ErrIdempotencyConflict (a stored answer to another method or path).
func (s *Store) Charge(ctx context.Context, r ChargeRequest) (billing.Debited, *billing.Answer, error) {
	var key billing.APIKey
	var err error
	if r.Key != nil {
		key = *r.Key
	} else if key, err = s.Key(ctx, r.Hash); err != nil {
		return billing.Debited{}, nil, err
	}
	if key.Revoked {
		return billing.Debited{}, nil, billing.ErrInvalidAPIKey
	}
	if r.Idem != nil {
		// A stored answer never changes but to complete a pending one: a
		// repeat that finds one needs no transaction, so that the repeats
		// of a busy key do not queue behind each other.
		if ans, err := s.Answer(ctx, r.Idem.ID, r.Now); err != nil {
			return billing.Debited{}, nil, err
		} else if ans != nil {
			return billing.Debited{}, ans, ans.Matches(r.Idem.Method, r.Idem.Path)
		}
	}
	keyRef := s.fs.Collection(keysCol).Doc(r.Hash)
	month, day := billing.UsageKeys(r.Now)
	keyUsage := keyRef.Collection(usageCol).Doc(month) // a capped key's use of each day
	var out billing.Debited
	var replay *billing.Answer
	var written *billing.Account
	refused := false
	err = s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		out, replay, written, refused = billing.Debited{}, nil, nil, false
		idemRef, ans, err := s.storedAnswer(tx, r.Idem, r.Now)
		if err != nil {
			return err
		}
		if ans != nil {
			replay = ans
			return nil
		}
		a, st, err := s.getAccount(ctx, tx, key.UID)
		if err != nil {
			return err
		}
		if key.Limits.CreditsPerDay > 0 {
			// The key's day is read and counted with the debit, so that
			// concurrent calls never pass its cap.
			used, err := dayUse(tx, keyUsage, day)
			if err != nil {
				return err
			}
			if err := key.Limits.AdmitDay(used, r.Cost); err != nil {
				return err
			}
		}
		taken, err := a.DebitFrom(r.Cost, r.Now)
		if errors.Is(err, billing.ErrInsufficientCredits) && a.Refused(r.Cost, r.Now) {
			// The first refusal after credits came in: write its notice,
			// and still answer 402.
			s.putAccount(tx, a, r.Now, st)
			written, refused = a, true
			return nil
		}
		if err != nil {
			return err
		}
		a.UsedKey(key.ID, r.Now)
		st.add(r.Route, r.Now, r.Cost)
		s.putAccount(tx, a, r.Now, st)
		written = a
		if key.Limits.CreditsPerDay > 0 {
			if err := tx.Set(keyUsage, map[string]any{"days": map[string]any{day: firestore.Increment(r.Cost)}}, firestore.MergeAll); err != nil {
				return err
			}
		}
		out = billing.Debited{UID: key.UID, KeyID: key.ID, Route: r.Route, Cost: r.Cost, Remaining: a.Balance(r.Now),
			At: r.Now, Taken: taken}
		if idemRef != nil {
			ans := billing.Answer{Pending: true}
			if r.Answer != nil {
				ans = r.Answer(out)
			}
			ans.Method, ans.Path, ans.RequestID = r.Idem.Method, r.Idem.Path, r.RequestID
			ans.CreatedAt, ans.ExpireAt = r.Now, r.Now.Add(billing.IdempotencyTTL)
			return tx.Create(idemRef, ans)
		}
		return nil
	}, firestore.MaxAttempts(debitAttempts))
	if refused && err != nil {
		return billing.Debited{}, nil, billing.ErrInsufficientCredits // the notice is not worth failing the call for
	}
	if err != nil {
		if errors.Is(err, billing.ErrNotFound) {
			return billing.Debited{}, nil, billing.ErrInvalidAPIKey // the owner is gone
		}
		if billing.ErrorCode(err) == billing.CodeKeyLimitReached {
			return billing.Debited{}, nil, err
		}
		return billing.Debited{}, nil, fmt.Errorf("charge %s: %w", key.UID, err)
	}
	s.dispatch(ctx, written)
	if refused {
		return billing.Debited{}, nil, billing.ErrInsufficientCredits
	}
	return out, replay, nil
}

// readAnswer reads the stored answer at ref in tx; nil if there is none or
// it is past its 24 hours (the TTL deletes it some time later).
// storedAnswer reads, in tx, the answer stored for idem (nil: none) and
// returns where it is kept. A stored answer to another method or path is
// an idempotency conflict. With no idem it does nothing.
func (s *Store) storedAnswer(tx *firestore.Transaction, idem *Idem, now time.Time) (*firestore.DocumentRef, *billing.Answer, error) {
	if idem == nil {
		return nil, nil, nil
	}
	ref := s.fs.Collection(idempotencyCol).Doc(idem.ID)
	ans, err := readAnswer(tx, ref, now)
	if err != nil || ans == nil {
		return ref, nil, err
	}
	if err := ans.Matches(idem.Method, idem.Path); err != nil {
		return ref, nil, err
	}
	return ref, ans, nil
}

func readAnswer(tx *firestore.Transaction, ref *firestore.DocumentRef, now time.Time) (*billing.Answer, error) {
	snap, err := tx.Get(ref)
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeAnswer(snap, now)
}

func decodeAnswer(snap *firestore.DocumentSnapshot, now time.Time) (*billing.Answer, error) {
	var ans billing.Answer
	if err := snap.DataTo(&ans); err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	if !now.Before(ans.ExpireAt) {
		return nil, nil
	}
	return &ans, nil
}

// Answer returns the stored answer id, or nil when there is none (never
// stored, refunded, or past its 24 hours).
func (s *Store) Answer(ctx context.Context, id string, now time.Time) (*billing.Answer, error) {
	snap, err := s.fs.Collection(idempotencyCol).Doc(id).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get answer: %w", err)
	}
	return decodeAnswer(snap, now)
}

// SaveAnswer completes the pending answer id with ans's status, header and
// body, keeping its method, path and expiry.
func (s *Store) SaveAnswer(ctx context.Context, id string, ans billing.Answer) error {
	_, err := s.fs.Collection(idempotencyCol).Doc(id).Update(ctx, []firestore.Update{
		{Path: "status", Value: ans.Status}, {Path: "body", Value: ans.Body}, {Path: "header", Value: ans.Header},
		{Path: "bodyOmitted", Value: ans.BodyOmitted}, {Path: "pending", Value: false}})
	if status.Code(err) == codes.NotFound {
		return nil // refunded meanwhile
	}
	if err != nil {
		return fmt.Errorf("save answer: %w", err)
	}
	return nil
}

// RefundRequest gives back a call's credits.
type RefundRequest struct {
	Charge    billing.Debited
	RequestID string
	Idem      string // the call's stored answer, deleted with the refund; "" none
	Now       time.Time
}

// Refund gives back the credits of a charge, once: a second refund of the
// same request id changes nothing. In the same transaction it takes the
// credits off the usage of the day and route they were counted on and
// deletes the call's stored answer, so that a retry with the same
// Idempotency-Key runs again. It returns the balance after.
func (s *Store) Refund(ctx context.Context, r RefundRequest) (int64, error) {
	c := r.Charge
	marker := s.account(c.UID).Collection(refundsCol).Doc(r.RequestID)
	var balance int64
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		_, err := tx.Get(marker)
		if err == nil {
			a, _, err := s.getAccount(ctx, tx, c.UID)
			if err != nil {
				return err
			}
			balance = a.Balance(r.Now)
			return nil // refunded already
		}
		if status.Code(err) != codes.NotFound {
			return err
		}
		a, st, err := s.getAccount(ctx, tx, c.UID)
		if err != nil {
			return err
		}
		a.Refund(r.RequestID, c.Taken, c.Cost, r.Now)
		st.add(c.Route, c.At, -c.Cost) // off the day and route it was counted on
		s.putAccount(tx, a, r.Now, st)
		if r.Idem != "" {
			if err := tx.Delete(s.fs.Collection(idempotencyCol).Doc(r.Idem)); err != nil {
				return err
			}
		}
		balance = a.Balance(r.Now)
		return tx.Create(marker, map[string]any{"cost": c.Cost, "route": c.Route, "at": r.Now,
			"expireAt": r.Now.Add(refundRetention)})
	}, firestore.MaxAttempts(debitAttempts))
	if err != nil {
		return 0, fmt.Errorf("refund %s of %s: %w", r.RequestID, c.UID, err)
	}
	return balance, nil
}
