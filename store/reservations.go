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

// ReservationRoute is the route under which settled reservations are
// counted in the usage.
const ReservationRoute = "/api/reservations"

// reservationRetention is how long a finished reservation is kept, so that
// a repeated settle answers the same (a TTL on expireAt deletes it).
const reservationRetention = 7 * 24 * time.Hour

// Reservation states.
const (
	ReservationHeld     = "held"
	ReservationSettled  = "settled"
	ReservationReleased = "released"
	ReservationExpired  = "expired"
)

// Reservation is credits held for work whose cost is known only after it
// ran: a lease of the account (billing.Account.Hold) and this record of it.
type Reservation struct {
	ID        string    `firestore:"id" json:"id"`
	UID       string    `firestore:"uid" json:"account"`
	KeyID     string    `firestore:"keyId" json:"-"`
	Credits   int64     `firestore:"credits" json:"credits"`
	ExpiresAt time.Time `firestore:"expiresAt" json:"expiresAt"`
	State     string    `firestore:"state" json:"-"`
	Charged   int64     `firestore:"charged" json:"-"`
	Released  int64     `firestore:"released" json:"-"`
	Balance   int64     `firestore:"balance" json:"-"` // after it ended
	ExpireAt  time.Time `firestore:"expireAt" json:"-"`
}

// ReserveRequest holds Credits of the account that owns the key hashed as
// Hash until Now+TTL.
type ReserveRequest struct {
	Hash, ID  string
	Credits   int64
	TTL       time.Duration
	Now       time.Time
	RequestID string
	Idem      *Idem
	// Answer is the answer to store for an idempotent request.
	Answer func(Reservation) billing.Answer
}

// Reserve holds the credits in one transaction with the reservation's
// record and, for an idempotent request, its answer; a stored answer is
// returned instead, holding nothing. It returns billing.ErrInvalidAPIKey,
// ErrInsufficientCredits (nothing held) and ErrIdempotencyConflict.
func (s *Store) Reserve(ctx context.Context, r ReserveRequest) (Reservation, *billing.Answer, error) {
	key, err := s.Key(ctx, r.Hash)
	if err != nil {
		return Reservation{}, nil, err
	}
	if key.Revoked {
		return Reservation{}, nil, billing.ErrInvalidAPIKey
	}
	var out Reservation
	var replay *billing.Answer
	var written *billing.Account
	err = s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		out, replay, written = Reservation{}, nil, nil
		idemRef, ans, err := s.storedAnswer(tx, r.Idem, r.Now)
		if err != nil {
			return err
		}
		if ans != nil {
			replay = ans
			return nil
		}
		a, st, err := s.accountAt(ctx, tx, key.UID, r.Now)
		if err != nil {
			return err
		}
		l, err := a.Hold(r.ID, r.Credits, r.TTL, r.Now)
		if err != nil {
			return err
		}
		s.putAccount(tx, a, r.Now, st)
		written = a
		out = Reservation{ID: r.ID, UID: key.UID, KeyID: key.ID, Credits: l.Amount, ExpiresAt: l.ExpiresAt,
			State: ReservationHeld, ExpireAt: l.ExpiresAt.Add(reservationRetention)}
		if err := tx.Create(s.fs.Collection(reservationsCol).Doc(r.ID), out); err != nil {
			return err
		}
		if idemRef != nil {
			ans := r.Answer(out)
			ans.Method, ans.Path, ans.RequestID = r.Idem.Method, r.Idem.Path, r.RequestID
			ans.CreatedAt, ans.ExpireAt = r.Now, r.Now.Add(billing.IdempotencyTTL)
			return tx.Create(idemRef, ans)
		}
		return nil
	}, firestore.MaxAttempts(debitAttempts))
	if err != nil {
		if errors.Is(err, billing.ErrNotFound) {
			return Reservation{}, nil, billing.ErrInvalidAPIKey
		}
		return Reservation{}, nil, fmt.Errorf("reserve on %s: %w", key.UID, err)
	}
	s.dispatch(ctx, written)
	return out, replay, nil
}

// EndReservation settles reservation id: charged credits are spent (0
// releases it), the rest goes back to the grants they were held from. The
// same call again returns the same reservation; a different end of one
// that ended answers CodeConflict; one past its expiry was released whole
// by the expiry and answers billing.ErrReservationExpired; an unknown id
// billing.ErrNotFound; charged above the held credits CodeBadRequest.
func (s *Store) EndReservation(ctx context.Context, id string, charged int64, now time.Time) (Reservation, error) {
	ref := s.fs.Collection(reservationsCol).Doc(id)
	var out Reservation
	var written *billing.Account
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		written = nil
		snap, err := tx.Get(ref)
		if status.Code(err) == codes.NotFound {
			return billing.ErrNotFound
		}
		if err != nil {
			return err
		}
		var res Reservation
		if err := snap.DataTo(&res); err != nil {
			return fmt.Errorf("decode reservation: %w", err)
		}
		out = res
		switch {
		case res.State == ReservationExpired:
			return billing.ErrReservationExpired
		case res.State != ReservationHeld && res.Charged == charged:
			return nil // the same end again
		case res.State != ReservationHeld:
			return billing.Errorf(billing.CodeConflict, "the reservation was %s with %d credits charged", res.State, res.Charged)
		case charged < 0 || charged > res.Credits:
			return billing.Errorf(billing.CodeBadRequest, "settle 0 to %d credits", res.Credits)
		}
		// Reading the account settles its expired leases, this one too if
		// it is past its time: then everything went back.
		a, st, err := s.accountAt(ctx, tx, res.UID, now)
		if err != nil {
			return err
		}
		if !now.Before(res.ExpiresAt) {
			res.State, res.Released, res.Balance = ReservationExpired, res.Credits, a.Balance(now)
			s.putAccount(tx, a, now, st)
			written = a
			out = res
			return tx.Set(ref, res)
		}
		back, err := a.SettleLease(id, charged, now)
		if errors.Is(err, billing.ErrNotFound) {
			return billing.ErrReservationExpired
		}
		if err != nil {
			return err
		}
		if charged > 0 {
			st.add(ReservationRoute, now, charged)
		}
		s.putAccount(tx, a, now, st)
		written = a
		res.State = ReservationSettled
		if charged == 0 {
			res.State = ReservationReleased
		}
		res.Charged, res.Released, res.Balance = charged, back, a.Balance(now)
		out = res
		return tx.Set(ref, res)
	}, firestore.MaxAttempts(debitAttempts))
	if err != nil {
		return Reservation{}, fmt.Errorf("end reservation %s: %w", id, err)
	}
	s.dispatch(ctx, written)
	if out.State == ReservationExpired {
		return out, billing.ErrReservationExpired
	}
	return out, nil
}
