package billing_test

import (
	"slices"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
)

// watched debits n as a store would: the debit, or the refusal, then the
// balance watch before the write.
func watched(t *testing.T, a *billing.Account, n int64, now time.Time) {
	t.Helper()
	if err := a.Debit(n, now); err != nil {
		a.Refused(n, now)
	}
	a.WatchBalance(billing.DefaultCatalog(), now)
}

func noticeIDs(a *billing.Account) []string {
	var ids []string
	for _, n := range a.Notices() {
		ids = append(ids, n.ID)
	}
	return ids
}

func TestBalanceNoticesOncePerCrossing(t *testing.T) {
	c := billing.DefaultCatalog()
	a := billing.NewAccount("u1", "u1@example.com", free, at0)
	a.WatchBalance(c, at0) // as Provision writes it
	if got := a.LowBalanceThreshold(c); got != 10 {
		t.Fatalf("Free threshold = %d, want 20%% of 50", got)
	}
	watched(t, a, 40, at0) // 10 left: at the threshold, not below
	if ids := noticeIDs(a); len(ids) != 0 {
		t.Fatalf("notices at the threshold: %v", ids)
	}
	for range 10 {
		watched(t, a, 1, at0)
	}
	watched(t, a, 1, at0) // refused
	watched(t, a, 1, at0) // refused again: no second notice
	want := []string{"low-balance-1", "exhausted-1"}
	if ids := noticeIDs(a); !slices.Equal(ids, want) {
		t.Fatalf("notices = %v, want %v", ids, want)
	}
	n := a.Notices()[0]
	if n.Type != billing.NoticeLowBalance || n.Data.Balance != 9 || n.Data.Threshold != 10 || n.Email != "u1@example.com" || n.UID != "u1" {
		t.Errorf("low-balance notice = %+v", n)
	}
	// The next week's grant re-arms both; spending down again notifies again.
	next := at0.Add(billing.Week)
	if !a.GrantFree(1, free, next) {
		t.Fatal("no grant")
	}
	a.WatchBalance(c, next)
	for range 50 {
		watched(t, a, 1, next)
	}
	watched(t, a, 1, next)
	want = append(want, "low-balance-2", "exhausted-2")
	if ids := noticeIDs(a); !slices.Equal(ids, want) {
		t.Fatalf("notices = %v, want %v", ids, want)
	}
}

func TestAPlanChangeAloneMakesNoLowBalanceNotice(t *testing.T) {
	c := billing.DefaultCatalog()
	a := billing.NewAccount("u6", "u6@example.com", free, at0)
	a.WatchBalance(c, at0)
	// Subscribing moves the account to Basic (threshold 200) before the
	// invoice's grant arrives: 50 is below it, but nothing was spent.
	mustApply(t, a, lifecycle()[0], at0)
	a.WatchBalance(c, at0)
	if ids := noticeIDs(a); len(ids) != 0 {
		t.Fatalf("notices on subscribing: %v", ids)
	}
	watched(t, a, 1, at0) // spending below the threshold notifies
	if ids := noticeIDs(a); !slices.Equal(ids, []string{"low-balance-1"}) {
		t.Fatalf("notices = %v", ids)
	}
}

func TestNoExhaustedNoticeWithoutCreditsEver(t *testing.T) {
	a := billing.OpenAccount(billing.Identity{UID: "u2", Email: "u2@example.com"}, free, true, at0)
	watched(t, a, 1, at0)
	if ids := noticeIDs(a); len(ids) != 0 {
		t.Fatalf("an account that never had credits was notified: %v", ids)
	}
}

func TestSettingsChooseThresholdAndEmails(t *testing.T) {
	c := billing.DefaultCatalog()
	a := billing.NewAccount("u3", "u3@example.com", free, at0)
	a.Notify = billing.NotifySettings{Threshold: 30, LowBalanceOff: true, BillingEmailsOff: true}
	a.WatchBalance(c, at0)
	watched(t, a, 21, at0) // 29 left
	watched(t, a, 100, at0)
	ns := a.Notices()
	if len(ns) != 2 || ns[0].Data.Threshold != 30 {
		t.Fatalf("notices = %+v", ns)
	}
	for _, n := range ns {
		if n.Email != "" {
			t.Errorf("%s has an email although the owner turned it off", n.ID)
		}
	}
	if err := (billing.NotifySettings{Threshold: -1}).Validate(); billing.ErrorCode(err) != billing.CodeBadRequest {
		t.Errorf("a negative threshold: %v", err)
	}
}

func TestMoneyNoticesAlwaysEmailAndHaveStableIDs(t *testing.T) {
	a := billing.NewAccount("u4", "u4@example.com", free, at0)
	a.Notify.BillingEmailsOff = true
	a.Notify.LowBalanceOff = true
	mustApply(t, a, basicOnce("cs_1", "pi_1", at0, true), at0)
	if err := a.Debit(1040, at0); err != nil {
		t.Fatal(err)
	}
	r := refund("evt_r1", "pi_1", 500, at0.Add(time.Hour))
	mustApply(t, a, r, at0.Add(time.Hour))
	mustApply(t, a, r, at0.Add(2*time.Hour)) // the same figures again: the same notice
	fail := billing.Event{ID: "evt_f", Created: at0, Change: billing.InvoiceFailed{InvoiceID: "in_1",
		SubscriptionID: "sub_1", Plan: "Basic", PeriodEnd: at0.Add(30 * 24 * time.Hour), Created: at0}}
	mustApply(t, a, fail, at0)
	mustApply(t, a, fail, at0)
	ended := billing.Event{ID: "evt_d", Created: at0.Add(time.Hour), Change: billing.SubscriptionChanged{SubscriptionID: "sub_1",
		Plan: "Basic", Status: billing.StatusCanceled, Created: at0.Add(time.Hour)}}
	mustApply(t, a, ended, at0.Add(time.Hour))
	want := []string{"clawback-pi_1-500-0", "payment-failed-in_1", "subscription-ended-sub_1"}
	if ids := noticeIDs(a); !slices.Equal(ids, want) {
		t.Fatalf("notices = %v, want %v", ids, want)
	}
	ns := a.Notices()
	if ns[0].Email == "" || ns[1].Email == "" {
		t.Errorf("money emails turned off: %+v", ns[:2])
	}
	if ns[2].Email != "" {
		t.Errorf("the subscription email went although billing emails are off")
	}
	if ns[0].Data.TakenBack != 10 || ns[0].Data.Debt != 990 {
		t.Errorf("clawback notice = %+v", ns[0].Data)
	}
}

func TestCancelNotifiesTheEndOnce(t *testing.T) {
	a := billing.NewAccount("u5", "u5@example.com", free, at0)
	for _, e := range lifecycle()[:2] {
		mustApply(t, a, e, t0)
	}
	a.CancelSubscription(t0.Add(time.Hour))
	a.CancelSubscription(t0.Add(2 * time.Hour))
	var ended int
	for _, n := range a.Notices() {
		if n.Type == billing.NoticeSubscription {
			ended++
		}
	}
	if ended != 1 {
		t.Fatalf("notices = %v, want one subscription end", noticeIDs(a))
	}
}
