package billing

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Notices tell the account's owner (by email) and the operator (by a signed
// webhook event) of a change they should know about. A notice is made by the
// rule that makes the change, into the account like a ledger entry, and the
// store writes it to the account's outbox in the same transaction, so a
// change notifies exactly when it is applied. Its id is derived from what it
// is about, so a retried transaction or a redelivered event writes the same
// notice again, not a second one.

// Notice types, as the operator's webhook events name them.
const (
	NoticeLowBalance    = "credits.low"
	NoticeExhausted     = "credits.exhausted"
	NoticePaymentFailed = "payment.failed"
	NoticeSubscription  = "subscription.updated"
	NoticeClawback      = "credits.clawed_back"
)

// NoticeTypes lists every notice type.
var NoticeTypes = []string{NoticeLowBalance, NoticeExhausted, NoticePaymentFailed, NoticeSubscription, NoticeClawback}

// LowBalanceShare is the default low-balance threshold: this percentage of
// the plan's allowance.
const LowBalanceShare = 20

// Notice is one notification of one account.
type Notice struct {
	ID      string    `firestore:"id" json:"id"`
	Type    string    `firestore:"type" json:"type"`
	UID     string    `firestore:"uid" json:"uid"`
	Created time.Time `firestore:"created" json:"created"`
	// Email is the address to write to, empty when the owner turned this
	// kind of email off (money emails always go).
	Email string     `firestore:"email" json:"email,omitempty"`
	Data  NoticeData `firestore:"data" json:"data"`
}

// NoticeData is what a notice says; each type fills the fields it needs.
type NoticeData struct {
	Plan              string    `firestore:"plan,omitempty" json:"plan,omitempty"`
	Balance           int64     `firestore:"balance" json:"balance"`
	Threshold         int64     `firestore:"threshold,omitempty" json:"threshold,omitempty"`
	Cost              int64     `firestore:"cost,omitempty" json:"cost,omitempty"`
	Subscription      string    `firestore:"subscription,omitempty" json:"subscription,omitempty"`
	Status            string    `firestore:"status,omitempty" json:"status,omitempty"`
	CancelAtPeriodEnd bool      `firestore:"cancelAtPeriodEnd,omitempty" json:"cancelAtPeriodEnd,omitempty"`
	PeriodEnd         time.Time `firestore:"periodEnd,omitempty" json:"periodEnd,omitzero"`
	Invoice           string    `firestore:"invoice,omitempty" json:"invoice,omitempty"`
	Payment           string    `firestore:"payment,omitempty" json:"payment,omitempty"`
	TakenBack         int64     `firestore:"takenBack,omitempty" json:"takenBack,omitempty"`
	Debt              int64     `firestore:"debt,omitempty" json:"debt,omitempty"`
	Reason            string    `firestore:"reason,omitempty" json:"reason,omitempty"`
}

// NoticeTask asks for the delivery of one notice: the body of
// POST /api/tasks/notify.
type NoticeTask struct {
	UID string `json:"uid"`
	ID  string `json:"id"`
}

// NoticeScheduler enqueues the delivery of notices. Scheduling the same
// task twice makes one task; it returns nil in that case.
type NoticeScheduler interface {
	ScheduleNotice(ctx context.Context, t NoticeTask) error
}

// NotifySettings are the owner's choices. The zero value is the default:
// every email on, the threshold LowBalanceShare% of the plan's allowance.
// Payment-failed and clawback emails cannot be turned off.
type NotifySettings struct {
	LowBalanceOff bool `firestore:"lowBalanceOff,omitempty"`
	// Threshold is the low-balance threshold in credits; 0 is the default.
	Threshold        int64 `firestore:"threshold,omitempty"`
	BillingEmailsOff bool  `firestore:"billingEmailsOff,omitempty"`
}

// MaxThreshold bounds a threshold the owner sets.
const MaxThreshold = 1_000_000_000

// Validate returns a CodeBadRequest error for a threshold out of range.
func (s NotifySettings) Validate() error {
	if s.Threshold < 0 || s.Threshold > MaxThreshold {
		return Errorf(CodeBadRequest, "the low-balance threshold must be from 0 (the default) to %d credits", MaxThreshold)
	}
	return nil
}

// NoticeWatch is what the account remembers of its balance notices. A
// notice is armed when it may go out; sending disarms it, and arming again
// starts a new crossing (Seq), whose notice has a new id.
type NoticeWatch struct {
	// Seen is the spendable balance when the account was last written: the
	// low-balance notice goes when the balance falls, not when a plan
	// change raises the threshold above it.
	Seen           int64 `firestore:"seen"`
	LowArmed       bool  `firestore:"lowArmed"`
	LowSeq         int64 `firestore:"lowSeq"`
	ExhaustedArmed bool  `firestore:"exhaustedArmed"`
	ExhaustedSeq   int64 `firestore:"exhaustedSeq"`
}

// Notices returns the notices made since the account was loaded.
func (a *Account) Notices() []Notice { return a.notices }

// LowBalanceThreshold is the account's threshold: the owner's, or
// LowBalanceShare% of its plan's allowance in c (at least 1).
func (a *Account) LowBalanceThreshold(c Catalog) int64 {
	if a.Notify.Threshold > 0 {
		return a.Notify.Threshold
	}
	p, ok := c.Plan(a.Plan)
	if !ok {
		p = c.Free()
	}
	return max(1, p.Credits*LowBalanceShare/100)
}

// Spendable is the balance as a low-balance watch sees it: the balance
// plus the credits out on leases, whose use is not known to the account
// (the lease's recorded use is watched where it is recorded).
func (a *Account) Spendable(now time.Time) int64 { return a.Balance(now) + a.Leased() }

// WatchBalance makes the low-balance notice when the spendable balance fell
// below the threshold and the notice is armed, and re-arms it once the
// balance is at or above the threshold again: one notice per crossing. A
// balance that did not fall (a plan change raised the threshold) waits for
// the next spending. The store calls it before every write of the account.
func (a *Account) WatchBalance(c Catalog, now time.Time) {
	threshold := a.LowBalanceThreshold(c)
	b := a.Spendable(now)
	fell := b < a.Watch.Seen
	a.Watch.Seen = b
	switch {
	case b >= threshold && !a.Watch.LowArmed:
		a.Watch.LowArmed = true
		a.Watch.LowSeq++
	case b < threshold && a.Watch.LowArmed && fell:
		a.Watch.LowArmed = false
		a.notify(Notice{ID: LowBalanceNoticeID(a.Watch.LowSeq), Type: NoticeLowBalance, Created: now,
			Data: NoticeData{Plan: a.Plan, Balance: b, Threshold: threshold}})
	}
}

// LowBalanceNoticeID is the id of the low-balance notice of crossing seq.
func LowBalanceNoticeID(seq int64) string { return "low-balance-" + strconv.FormatInt(seq, 10) }

// LowBalanceWatch is what a lease's holder needs to see the low-balance
// crossing where it records the lease's use, outside the account: the
// threshold and, while armed, the notice of the current crossing. Every
// instance that sees the same crossing makes the same notice, and the
// account's own watch makes it again when the lease is settled, not another.
type LowBalanceWatch struct {
	Threshold int64
	Armed     bool
	Notice    Notice // the crossing's notice, its balance to be filled in
}

// LowBalanceWatch returns the account's watch as it stands.
func (a *Account) LowBalanceWatch(c Catalog, now time.Time) LowBalanceWatch {
	threshold := a.LowBalanceThreshold(c)
	n := Notice{ID: LowBalanceNoticeID(a.Watch.LowSeq), Type: NoticeLowBalance, UID: a.UID, Created: now,
		Data: NoticeData{Plan: a.Plan, Threshold: threshold}}
	a.addressed(&n)
	return LowBalanceWatch{Threshold: threshold, Armed: a.Watch.LowArmed, Notice: n}
}

// Crossed reports whether a use outside the account took the balance from
// before to after across the threshold, and returns the notice that says
// so, made at now.
func (w LowBalanceWatch) Crossed(before, after int64, now time.Time) (Notice, bool) {
	if !w.Armed || before < w.Threshold || after >= w.Threshold {
		return Notice{}, false
	}
	n := w.Notice
	n.Created, n.Data.Balance = now, after
	return n, true
}

// Refused records that a debit of cost was refused for want of credits. The
// first refusal after credits came in makes the exhausted notice; it
// reports whether it made one (the account must then be written).
func (a *Account) Refused(cost int64, now time.Time) bool {
	if !a.Watch.ExhaustedArmed {
		return false
	}
	a.Watch.ExhaustedArmed = false
	a.notify(Notice{ID: "exhausted-" + strconv.FormatInt(a.Watch.ExhaustedSeq, 10), Type: NoticeExhausted,
		Created: now, Data: NoticeData{Plan: a.Plan, Balance: a.Balance(now), Cost: cost, Debt: a.Debt}})
	return true
}

// armExhausted arms the exhausted notice: credits came in.
func (a *Account) armExhausted() {
	if !a.Watch.ExhaustedArmed {
		a.Watch.ExhaustedArmed = true
		a.Watch.ExhaustedSeq++
	}
}

// notify adds n, addressed as the owner's settings say, unless a notice
// with its id was made since load.
func (a *Account) notify(n Notice) {
	for _, m := range a.notices {
		if m.ID == n.ID {
			return
		}
	}
	n.UID = a.UID
	a.addressed(&n)
	a.notices = append(a.notices, n)
}

// addressed sets n's email address unless the owner turned its kind off.
func (a *Account) addressed(n *Notice) {
	switch n.Type {
	case NoticeLowBalance:
		if a.Notify.LowBalanceOff {
			return
		}
	case NoticeExhausted, NoticeSubscription:
		if a.Notify.BillingEmailsOff {
			return
		}
	}
	n.Email = a.Email
}

// notifySubscription makes the notice of a subscription that was set to
// cancel at its period's end, or that ended.
func (a *Account) notifySubscription(s Subscription, now time.Time) {
	var id string
	switch {
	case s.Status == StatusCanceled || s.Status == StatusIncompleteExpired:
		id = "subscription-ended-" + s.ID
	case s.CancelAtPeriodEnd:
		id = fmt.Sprintf("subscription-cancelled-%s-%d", s.ID, s.CurrentPeriodEnd.Unix())
	default:
		return
	}
	a.notify(Notice{ID: id, Type: NoticeSubscription, Created: now, Data: NoticeData{Plan: s.Plan,
		Subscription: s.ID, Status: s.Status, CancelAtPeriodEnd: s.CancelAtPeriodEnd, PeriodEnd: s.CurrentPeriodEnd,
		Balance: a.Balance(now)}})
}

// NoticeSummary is the one line that says what a notice told the owner,
// for the ledger and the email's subject.
func NoticeSummary(n Notice) string {
	d := n.Data
	switch n.Type {
	case NoticeLowBalance:
		return fmt.Sprintf("Your credits are running low: %d left", d.Balance)
	case NoticeExhausted:
		if d.Debt > 0 {
			return "Your API calls are refused: the account owes credits"
		}
		return "You have run out of credits"
	case NoticePaymentFailed:
		return "A payment failed"
	case NoticeSubscription:
		if d.Status == StatusCanceled || d.Status == StatusIncompleteExpired {
			return "Your subscription has ended"
		}
		return "Your subscription is cancelled at the end of its period"
	case NoticeClawback:
		return fmt.Sprintf("Credits taken back: %d", d.TakenBack+d.Debt)
	}
	return "Paymeter notice"
}

// Outbox delivery states.
const (
	OutboxPending = "pending"
	OutboxSent    = "sent"
	OutboxFailed  = "failed" // given up: the webhook's retry window passed
)

// OutboxEntry is a notice as its outbox holds it, with how far its delivery
// has come. A channel whose time is set has been delivered and is never
// sent again.
type OutboxEntry struct {
	Notice
	Status        string    `firestore:"status"`
	EmailSentAt   time.Time `firestore:"emailSentAt"`
	WebhookSentAt time.Time `firestore:"webhookSentAt"`
	Attempts      int64     `firestore:"attempts"`
	// LastError says, without detail that may hold a secret, why the last
	// attempt failed.
	LastError    string    `firestore:"lastError"`
	ClaimedUntil time.Time `firestore:"claimedUntil"`
}

// DeliveryReport is what one delivery attempt did: the channels it
// delivered (zero times: not this time), why it failed if it did, and
// whether the notice is done (Status OutboxSent or OutboxFailed).
type DeliveryReport struct {
	EmailSentAt   time.Time
	WebhookSentAt time.Time
	Error         string
	Status        string
	// Ledger, if not empty, is the ledger note that says a notice went out.
	Ledger string
	At     time.Time
}
