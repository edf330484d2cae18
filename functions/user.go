package functions

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
)

// authedHandler is a handler for a signed-in user whose account exists.
// userHandler is the User entry point: the signed-in user's API and the
// public plans.
func (s *Server) userHandler() http.Handler {
	user := newRouter(s)
	user.handle("/api/plans", methods{http.MethodGet: s.plans})
	user.handle("/api/user", methods{http.MethodGet: s.signedIn(s.user)})
	user.handle("/api/keys", methods{http.MethodGet: s.signedIn(s.listKeys), http.MethodPost: s.signedIn(s.createKey)})
	user.handle("/api/keys/{id}", methods{http.MethodDelete: s.signedIn(s.revokeKey), http.MethodPatch: s.signedIn(s.updateKey)})
	user.handle("/api/keys/{id}/roll", methods{http.MethodPost: s.signedIn(s.rollKey)})
	user.handle("/api/usage", methods{http.MethodGet: s.signedIn(s.usage)})
	user.handle("/api/ledger", methods{http.MethodGet: s.signedIn(s.ledger)})
	user.handle("/api/notifications", methods{http.MethodGet: s.signedIn(s.notifications), http.MethodPut: s.signedIn(s.putNotifications)})
	return s.wrap(user)
}

type authedHandler func(w http.ResponseWriter, r *http.Request, a *billing.Account)

// signedIn verifies the Firebase ID token of the request and loads the
// caller's account, provisioning it on the first call. The handler finds the
// caller's identity with identityOf.
func (s *Server) signedIn(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := httpjson.Bearer(r)
		if !ok {
			s.Fail(w, r, billing.ErrUnauthenticated)
			return
		}
		id, err := s.Auth.Verify(r.Context(), token)
		if err != nil {
			s.Fail(w, r, err)
			return
		}
		a, err := s.accountOf(r.Context(), id)
		if err != nil {
			s.Fail(w, r, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)), a)
	}
}

type identityKey struct{}

// identityOf returns the identity signedIn verified for r.
func identityOf(r *http.Request) billing.Identity {
	id, _ := r.Context().Value(identityKey{}).(billing.Identity)
	return id
}

// accountOf returns the account of id, creating it (and scheduling its next
// Free grant) on the first call, and starting its Free grants on the first
// call with a verified email if they waited for one.
func (s *Server) accountOf(ctx context.Context, id billing.Identity) (*billing.Account, error) {
	a, err := s.Accounts.Account(ctx, id.UID)
	if err == nil {
		return s.startFree(ctx, id, a)
	}
	if !errors.Is(err, billing.ErrNotFound) {
		return nil, err
	}
	a, created, err := s.Accounts.Provision(ctx, id, s.Clock.Now())
	if err != nil {
		return nil, err
	}
	if created {
		s.Log.InfoContext(ctx, "account created", "uid", id.UID, "freeAwaitsVerifiedEmail", a.FreeAwaitsVerifiedEmail)
		if t, ok := a.NextGrant(); ok {
			// A failure here leaves the chain to the daily reconcile sweep,
			// which re-enqueues overdue accounts; the user is not kept waiting.
			if err := s.Scheduler.ScheduleGrant(ctx, t); err != nil {
				s.Log.ErrorContext(ctx, "schedule first Free grant", "uid", id.UID, "err", err)
			}
		}
	}
	return a, nil
}

// startFree starts the Free grants of an account that waited for a verified
// email once id carries one (or the operator no longer asks for one). The
// transaction re-reads the account, so concurrent calls grant once.
func (s *Server) startFree(ctx context.Context, id billing.Identity, a *billing.Account) (*billing.Account, error) {
	if !a.FreeAwaitsVerifiedEmail || (s.Config.RequireVerifiedEmail && !id.EmailVerified) {
		return a, nil
	}
	now := s.Clock.Now()
	var started bool
	a, err := s.Accounts.UpdateAccount(ctx, id.UID, func(a *billing.Account) error {
		started = a.StartFree(s.Catalog.Free(), now)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if started {
		s.Log.InfoContext(ctx, "email verified: Free grants started", "uid", id.UID)
		if t, ok := a.NextGrant(); ok {
			// As at provisioning: the reconcile sweep heals a failure.
			if err := s.Scheduler.ScheduleGrant(ctx, t); err != nil {
				s.Log.ErrorContext(ctx, "schedule Free grant", "uid", id.UID, "err", err)
			}
		}
	}
	return a, nil
}

func (s *Server) plans(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	httpjson.Write(w, http.StatusOK, s.Catalog)
}

type userJSON struct {
	UID          string            `json:"uid"`
	Email        string            `json:"email"`
	Plan         string            `json:"plan"`
	Credits      int64             `json:"credits"`
	Debt         int64             `json:"debt"`
	Subscription *subscriptionJSON `json:"subscription"`
	NextGrantAt  *time.Time        `json:"nextGrantAt"`
	Grants       []grantJSON       `json:"grants"`
	// FreeCreditsPending says why Free credits are held back:
	// "verify_email" until the account's email is verified; else null.
	FreeCreditsPending *string `json:"freeCreditsPending"`
}

// pendingVerifyEmail is FreeCreditsPending for an unverified email.
const pendingVerifyEmail = "verify_email"

type subscriptionJSON struct {
	Plan              string    `json:"plan"`
	Status            string    `json:"status"`
	CurrentPeriodEnd  time.Time `json:"currentPeriodEnd"`
	CancelAtPeriodEnd bool      `json:"cancelAtPeriodEnd"`
}

type grantJSON struct {
	Source    string     `json:"source"`
	Amount    int64      `json:"amount"`
	Remaining int64      `json:"remaining"`
	GrantedAt time.Time  `json:"grantedAt"`
	ExpiresAt *time.Time `json:"expiresAt"`
}

// toUserJSON is the contract's "user" object for a at now.
func toUserJSON(a *billing.Account, now time.Time) userJSON {
	u := userJSON{UID: a.UID, Email: a.Email, Plan: a.Plan, Credits: a.Balance(now), Debt: a.Debt,
		NextGrantAt: timeOrNil(a.NextGrantAt), Grants: []grantJSON{}}
	if a.FreeAwaitsVerifiedEmail {
		reason := pendingVerifyEmail
		u.FreeCreditsPending = &reason
	}
	// An ended subscription is kept on the account (late events are ordered
	// against it) but the user has none.
	if sub := a.Subscription; sub != nil && sub.Status != "canceled" && sub.Status != "incomplete_expired" {
		u.Subscription = &subscriptionJSON{Plan: sub.Plan, Status: sub.Status,
			CurrentPeriodEnd: sub.CurrentPeriodEnd.UTC(), CancelAtPeriodEnd: sub.CancelAtPeriodEnd}
	}
	for _, g := range a.LiveGrants(now) {
		u.Grants = append(u.Grants, grantJSON{Source: g.Source, Amount: g.Amount, Remaining: g.Remaining,
			GrantedAt: g.GrantedAt.UTC(), ExpiresAt: timeOrNil(g.ExpiresAt)})
	}
	return u
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func (s *Server) user(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	httpjson.Write(w, http.StatusOK, map[string]any{"user": toUserJSON(a, s.Clock.Now())})
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	keys, err := s.Keys.Keys(r.Context(), a.UID)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	now := s.Clock.Now()
	out := make([]keyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, toKeyJSON(k, now))
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"keys": out})
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	in, opts, err := decodeKeyOptions(r)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	name := ""
	if in.Name != nil {
		name = *in.Name
	}
	now := s.Clock.Now()
	secret, key, hash, err := billing.NewAPIKey(s.Random, a.UID, name, now)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	if err := opts.Apply(&key, s.meterPaths(), now); err != nil {
		s.Fail(w, r, err)
		return
	}
	if err := s.Keys.CreateKey(r.Context(), hash, key); err != nil {
		s.Fail(w, r, err)
		return
	}
	s.Log.InfoContext(r.Context(), "api key created", "uid", a.UID, "key", key.ID, "prefix", key.Prefix)
	out := toKeyJSON(key, now)
	out.Key = secret
	httpjson.Write(w, http.StatusCreated, out)
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	id := r.PathValue("id")
	if err := s.Keys.RevokeKey(r.Context(), a.UID, id); err != nil {
		if errors.Is(err, billing.ErrNotFound) {
			err = billing.Errorf(billing.CodeNotFound, "you have no key with that id")
		}
		s.Fail(w, r, err)
		return
	}
	s.forgetKey(id, true)
	s.Log.InfoContext(r.Context(), "api key revoked", "uid", a.UID, "key", id)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) usage(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	days, err := intParam(r, "days", 30, 1, 366)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	now := s.Clock.Now()
	out, err := s.History.Usage(r.Context(), a.UID, now.AddDate(0, 0, -(days-1)), now)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"days": out})
}

func (s *Server) ledger(w http.ResponseWriter, r *http.Request, a *billing.Account) {
	limit, err := intParam(r, "limit", 50, 1, 500)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	entries, err := s.History.Ledger(r.Context(), a.UID, limit)
	if err != nil {
		s.Fail(w, r, err)
		return
	}
	if entries == nil {
		entries = []billing.Entry{}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"entries": entries})
}

// intParam reads an integer query parameter within [lo, hi].
func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, billing.Errorf(billing.CodeBadRequest, "%s must be a whole number from %d to %d", name, lo, hi)
	}
	return n, nil
}
