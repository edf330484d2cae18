package store

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/paymeter/paymeter/billing"
)

// Notices (billing.Notice) are written to accounts/{uid}/outbox/{id} in the
// transaction that made them, by putAccount, and the hook set with
// OnNotices is told after the commit, to schedule their delivery. The
// delivery (notify/) claims an entry, sends it, and records what it sent.
const outboxCol = "outbox"

// outboxRetention is how long an outbox entry is kept (a TTL policy on
// expireAt deletes it): well past the three days a delivery is retried.
const outboxRetention = 30 * 24 * time.Hour

// ErrClaimed is returned by ClaimNotice while another delivery of the same
// notice holds it: the caller retries later.
var ErrClaimed = &billing.Error{Code: billing.CodeUnavailable, Message: "the notice is being delivered"}

// OnNotices sets fn, called after every commit that wrote notices with
// their delivery tasks. It must not block for long: it runs on the request
// that made the change. Call it before the Store is used.
func (s *Store) OnNotices(fn func(ctx context.Context, tasks []billing.NoticeTask)) { s.onNotices = fn }

func (s *Store) outbox(uid, id string) *firestore.DocumentRef {
	return s.account(uid).Collection(outboxCol).Doc(id)
}

// writeNotices writes a's new notices to its outbox, pending. Only what a
// notice says and its status are written, merged: writing a notice again
// (a subscription's end seen by the cancel endpoint and then in Stripe's
// event, a lease's crossing seen twice) keeps the times its channels were
// delivered, which the delivery never sends again.
func (s *Store) writeNotices(tx *firestore.Transaction, a *billing.Account) {
	for _, n := range a.Notices() {
		_ = tx.Set(s.outbox(a.UID, n.ID), noticeFields(n), firestore.MergeAll)
	}
}

func noticeFields(n billing.Notice) map[string]any {
	return map[string]any{"id": n.ID, "type": n.Type, "uid": n.UID, "created": n.Created, "email": n.Email,
		"data": n.Data, "status": billing.OutboxPending, "expireAt": n.Created.Add(outboxRetention)}
}

// dispatch tells the hook of the notices a committed write of a made.
func (s *Store) dispatch(ctx context.Context, a *billing.Account) {
	if a == nil || s.onNotices == nil || len(a.Notices()) == 0 {
		return
	}
	tasks := make([]billing.NoticeTask, 0, len(a.Notices()))
	for _, n := range a.Notices() {
		tasks = append(tasks, billing.NoticeTask{UID: a.UID, ID: n.ID})
	}
	s.onNotices(ctx, tasks)
}

// Notice returns the outbox entry id of uid, or billing.ErrNotFound.
func (s *Store) Notice(ctx context.Context, uid, id string) (billing.OutboxEntry, error) {
	snap, err := s.outbox(uid, id).Get(ctx)
	if err != nil {
		return billing.OutboxEntry{}, fmt.Errorf("notice %s of %s: %w", id, uid, notFound(err))
	}
	return decodeOutbox(snap)
}

// ClaimNotice claims the outbox entry id of uid for one delivery attempt
// until now+hold, counting the attempt, and returns it. An entry that is
// done is returned unclaimed. It returns ErrClaimed while another attempt
// holds it and billing.ErrNotFound when there is no such entry.
func (s *Store) ClaimNotice(ctx context.Context, uid, id string, now time.Time, hold time.Duration) (billing.OutboxEntry, error) {
	ref := s.outbox(uid, id)
	var out billing.OutboxEntry
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if err != nil {
			return notFound(err)
		}
		if out, err = decodeOutbox(snap); err != nil {
			return err
		}
		if out.Status == billing.OutboxSent || out.Status == billing.OutboxFailed {
			return nil
		}
		if now.Before(out.ClaimedUntil) {
			return ErrClaimed
		}
		out.Attempts++
		out.ClaimedUntil = now.Add(hold)
		return tx.Update(ref, []firestore.Update{{Path: "attempts", Value: out.Attempts},
			{Path: "claimedUntil", Value: out.ClaimedUntil}, {Path: "status", Value: billing.OutboxPending}})
	})
	if err != nil {
		return billing.OutboxEntry{}, fmt.Errorf("claim notice %s of %s: %w", id, uid, err)
	}
	return out, nil
}

// ReportNotice records what a delivery attempt of the outbox entry id of
// uid did and releases its claim; a report that ends the delivery with an
// email sent also writes the ledger line r.Ledger, in the same commit.
func (s *Store) ReportNotice(ctx context.Context, uid, id string, r billing.DeliveryReport) error {
	ups := []firestore.Update{{Path: "claimedUntil", Value: time.Time{}}, {Path: "lastError", Value: r.Error}}
	if !r.EmailSentAt.IsZero() {
		ups = append(ups, firestore.Update{Path: "emailSentAt", Value: r.EmailSentAt})
	}
	if !r.WebhookSentAt.IsZero() {
		ups = append(ups, firestore.Update{Path: "webhookSentAt", Value: r.WebhookSentAt})
	}
	if r.Status != "" {
		ups = append(ups, firestore.Update{Path: "status", Value: r.Status})
	}
	//lint:ignore SA1019 two plain writes in one commit, no reads.
	b := s.fs.Batch()
	b.Update(s.outbox(uid, id), ups)
	if r.Ledger != "" {
		b.Set(s.account(uid).Collection(ledgerCol).Doc("notice-"+id), billing.Entry{ID: "notice-" + id,
			Kind: billing.EntryNotice, At: r.At, Note: r.Ledger})
	}
	if _, err := b.Commit(ctx); err != nil {
		return fmt.Errorf("report notice %s of %s: %w", id, uid, notFound(err))
	}
	return nil
}

// PendingNotices lists the outbox entries of every account still pending
// that were created before before, oldest first, at most limit: the
// notices whose task was never scheduled (the process stopped between the
// commit and the scheduling). It needs the collection-group index on
// outbox (status, created) declared in firestore.indexes.json.
func (s *Store) PendingNotices(ctx context.Context, before time.Time, limit int) ([]billing.NoticeTask, error) {
	snaps, err := s.fs.CollectionGroup(outboxCol).Where("status", "==", billing.OutboxPending).
		Where("created", "<", before).OrderBy("created", firestore.Asc).Limit(limit).Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("pending notices: %w", err)
	}
	out := make([]billing.NoticeTask, 0, len(snaps))
	for _, snap := range snaps {
		e, err := decodeOutbox(snap)
		if err != nil {
			return nil, err
		}
		out = append(out, billing.NoticeTask{UID: e.UID, ID: e.ID})
	}
	return out, nil
}

func decodeOutbox(snap *firestore.DocumentSnapshot) (billing.OutboxEntry, error) {
	var e billing.OutboxEntry
	if err := snap.DataTo(&e); err != nil {
		return billing.OutboxEntry{}, fmt.Errorf("decode notice %s: %w", snap.Ref.ID, err)
	}
	if e.Status == "" {
		e.Status = billing.OutboxPending
	}
	return e, nil
}
