package devstripe_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/devstripe"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/payments"
)

const secret = "whsec_devstripe_test"

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// hook is a webhook that verifies each delivery as the real one does and
// keeps the decoded events; it refuses the first failFirst deliveries.
type hook struct {
	mu        sync.Mutex
	verifier  *payments.Webhook
	events    []billing.Event
	failFirst int
	attempts  int
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts++
	if h.attempts <= h.failFirst {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	ev, err := h.verifier.VerifyEvent(body, r.Header.Get("Stripe-Signature"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.events = append(h.events, ev)
}

func (h *hook) got() []billing.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]billing.Event(nil), h.events...)
}

func setup(t *testing.T, failFirst int) (*devstripe.Stripe, http.Handler, *hook, *clock.Fixed) {
	t.Helper()
	h := &hook{verifier: payments.NewWebhook(secret), failFirst: failFirst}
	c := clock.NewFixed(t0)
	s := devstripe.New(devstripe.Config{PublicURL: "http://localhost:8000/", WebhookSecret: secret, Webhook: h,
		Catalog: billing.DefaultCatalog(), Clock: c})
	t.Cleanup(s.Close)
	return s, s.Routes(), h, c
}

func call(t *testing.T, h http.Handler, method, path, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if strings.HasPrefix(body, "{") {
		req.Header.Set("Content-Type", "application/json")
	} else if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func state(t *testing.T, h http.Handler) map[string][]map[string]any {
	t.Helper()
	_, body := call(t, h, "GET", "/dev/state", "")
	var out map[string][]map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func checkout(t *testing.T, s *devstripe.Stripe, kind string) billing.Checkout {
	t.Helper()
	ctx := context.Background()
	cus, err := s.EnsureCustomer(ctx, "u1", "u1@example.com")
	if err != nil {
		t.Fatal(err)
	}
	co, err := s.CheckoutSession(ctx, billing.CheckoutRequest{UID: "u1", CustomerID: cus, Plan: "Basic", Kind: kind})
	if err != nil {
		t.Fatal(err)
	}
	return co
}

func TestCheckoutPageHasLabelledPayAndCancel(t *testing.T) {
	s, routes, _, _ := setup(t, 0)
	co := checkout(t, s, billing.PriceMonthly)
	u, _ := url.Parse(co.URL)
	code, page := call(t, routes, "GET", u.Path, "")
	if code != 200 {
		t.Fatalf("checkout page: %d", code)
	}
	for _, want := range []string{`id="pay"`, `aria-label="Pay £5.00"`, `id="cancel"`, `aria-label="Cancel and return to Paymeter"`,
		`action="/dev/checkout/` + co.SessionID + `/complete"`, `action="http://localhost:8000/checkout/cancel"`, "a month", `lang="en"`} {
		if !strings.Contains(page, want) {
			t.Errorf("checkout page lacks %s", want)
		}
	}
	// The Pay button posts a form and the browser goes to the success URL.
	req := httptest.NewRequest("POST", "/dev/checkout/"+co.SessionID+"/complete", strings.NewReader("x=1"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	routes.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "http://localhost:8000/checkout/success" {
		t.Errorf("pay: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	if code, _ := call(t, routes, "POST", "/dev/checkout/"+co.SessionID+"/complete", ""); code != 409 {
		t.Errorf("paying twice: %d", code)
	}
	if code, _ := call(t, routes, "GET", "/dev/checkout/cs_nope", ""); code != 404 {
		t.Errorf("unknown session: %d", code)
	}
}

// TestEventsDecodeAsStripeEvents runs the whole lifecycle and checks that
// every event passes the real webhook verifier and decodes to the change
// it stands for.
func TestEventsDecodeAsStripeEvents(t *testing.T) {
	s, routes, h, c := setup(t, 0)
	co := checkout(t, s, billing.PriceMonthly)
	mustOK := func(method, path, body string) {
		t.Helper()
		if code, out := call(t, routes, method, path, body); code != 200 {
			t.Fatalf("%s %s: %d %s", method, path, code, out)
		}
	}
	mustOK("POST", "/dev/checkout/"+co.SessionID+"/complete", "")
	sub := state(t, routes)["subscriptions"][0]["id"].(string)
	c.Add(time.Hour)
	mustOK("POST", "/dev/subscriptions/"+sub+"/renew", "")
	mustOK("POST", "/dev/subscriptions/"+sub+"/update", `{"plan":"Power"}`)
	mustOK("POST", "/dev/subscriptions/"+sub+"/fail", "")
	mustOK("POST", "/dev/subscriptions/"+sub+"/cancel", `{"atPeriodEnd":true}`)
	charge := state(t, routes)["charges"][0]["id"].(string)
	mustOK("POST", "/dev/charges/"+charge+"/refund", `{"amount":100}`)
	mustOK("POST", "/dev/charges/"+charge+"/dispute", "")
	mustOK("POST", "/dev/subscriptions/"+sub+"/cancel", "")

	var types []string
	for _, ev := range h.got() {
		types = append(types, ev.Type)
	}
	want := "checkout.session.completed invoice.paid invoice.paid customer.subscription.updated invoice.paid invoice.payment_failed " +
		"customer.subscription.updated charge.refunded charge.dispute.created customer.subscription.deleted"
	if strings.Join(types, " ") != want {
		t.Fatalf("events:\n got %s\nwant %s", strings.Join(types, " "), want)
	}
	evs := h.got()
	var last time.Time
	for _, ev := range evs {
		if !ev.Created.After(last) {
			t.Errorf("%s at %v is not after the previous event", ev.Type, ev.Created)
		}
		last = ev.Created
		if ev.Change == nil {
			t.Errorf("%s decoded to no change", ev.Type)
		}
		if ev.Type != "charge.dispute.created" && ev.CustomerID == "" {
			t.Errorf("%s names no customer", ev.Type)
		}
	}
	cs := evs[0].Change.(billing.CheckoutCompleted)
	if cs.Plan != "Basic" || cs.Kind != billing.PriceMonthly || cs.SubscriptionID != sub || !cs.Paid || evs[0].UID != "u1" {
		t.Errorf("checkout: %+v uid %q", cs, evs[0].UID)
	}
	first := evs[1].Change.(billing.InvoicePaid)
	if first.Plan != "Basic" || first.Amount != 500 || first.Payment == "" || !first.PeriodEnd.Equal(first.PeriodStart.AddDate(0, 1, 0)) {
		t.Errorf("first invoice: %+v", first)
	}
	up := evs[3].Change.(billing.SubscriptionChanged)
	upPaid := evs[4].Change.(billing.InvoicePaid)
	if up.Plan != "Power" || up.Status != "active" || upPaid.Plan != "Power" || !up.CurrentPeriodEnd.Equal(upPaid.PeriodEnd) || upPaid.Amount >= 5000 {
		t.Errorf("upgrade: %+v then %+v (the unused Basic time is credited)", up, upPaid)
	}
	if f := evs[5].Change.(billing.InvoiceFailed); f.Plan != "Power" {
		t.Errorf("failed: %+v", f)
	}
	if ce := evs[6].Change.(billing.SubscriptionChanged); !ce.CancelAtPeriodEnd || ce.Status != "past_due" {
		t.Errorf("cancel at period end: %+v", ce)
	}
	if r := evs[7].Change.(billing.PaymentReversed); r.Charged != 500 || r.Refunded != 100 || r.Payment != first.Payment {
		t.Errorf("refund: %+v (payment of the first invoice %s)", r, first.Payment)
	}
	if d := evs[8].Change.(billing.PaymentReversed); d.ChargeID != charge || d.Disputed != 400 || d.Payment != first.Payment {
		t.Errorf("dispute: %+v", d)
	}
	if ch, err := s.Charge(context.Background(), charge); err != nil || ch.CustomerID != evs[0].CustomerID || ch.Amount != 500 {
		t.Errorf("Charge: %+v %v", ch, err)
	}
	if d := evs[9].Change.(billing.SubscriptionChanged); d.Status != "canceled" {
		t.Errorf("deleted: %+v", d)
	}
}

func TestTopUpEmitsOneCheckoutEvent(t *testing.T) {
	s, routes, h, _ := setup(t, 0)
	co := checkout(t, s, billing.PriceInstant)
	if code, out := call(t, routes, "POST", "/dev/checkout/"+co.SessionID+"/complete", ""); code != 200 {
		t.Fatalf("%d %s", code, out)
	}
	evs := h.got()
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	cs := evs[0].Change.(billing.CheckoutCompleted)
	if cs.Kind != billing.PriceInstant || cs.Payment == "" || cs.SubscriptionID != "" || !cs.Paid {
		t.Errorf("top-up: %+v", cs)
	}
	if st := state(t, routes); len(st["charges"]) != 1 || st["charges"][0]["payment_intent"] != cs.Payment {
		t.Errorf("charges: %v", st["charges"])
	}
}

func TestDeliveryRetriesUntilAccepted(t *testing.T) {
	s, routes, h, _ := setup(t, 3)
	co := checkout(t, s, billing.PriceInstant)
	code, out := call(t, routes, "POST", "/dev/checkout/"+co.SessionID+"/complete", "")
	if code != 200 || !strings.Contains(out, `"delivered": true`) {
		t.Fatalf("%d %s", code, out)
	}
	if len(h.got()) != 1 || h.attempts != 4 {
		t.Errorf("%d events after %d attempts, want 1 after 4", len(h.got()), h.attempts)
	}
	ev := state(t, routes)["events"][0]
	if ev["attempts"].(float64) != 4 || ev["deliveries"].(float64) != 1 || ev["lastStatus"].(float64) != 200 {
		t.Errorf("state of the event: %v", ev)
	}
	if code, _ := call(t, routes, "POST", "/dev/events/"+ev["id"].(string)+"/resend", ""); code != 200 {
		t.Errorf("resend: %d", code)
	}
	if got := h.got(); len(got) != 2 || got[1].ID != got[0].ID {
		t.Errorf("resend delivered %v", got)
	}
	if code, _ := call(t, routes, "POST", "/dev/events/evt_nope/resend", ""); code != 404 {
		t.Errorf("resend unknown: %d", code)
	}
}

func TestAdvanceRenewsLikeATestClock(t *testing.T) {
	s, routes, h, c := setup(t, 0)
	co := checkout(t, s, billing.PriceMonthly)
	call(t, routes, "POST", "/dev/checkout/"+co.SessionID+"/complete", "")
	c.Add(95 * 24 * time.Hour) // three period ends pass
	if err := s.AdvanceTo(context.Background(), c.Now()); err != nil {
		t.Fatal(err)
	}
	renewals := h.got()[2:]
	if len(renewals) != 3 {
		t.Fatalf("%d renewals, want 3", len(renewals))
	}
	for i, ev := range renewals {
		paid := ev.Change.(billing.InvoicePaid)
		if !paid.PeriodStart.Equal(t0.AddDate(0, i+1, 0)) || !paid.PeriodEnd.Equal(t0.AddDate(0, i+2, 0)) {
			t.Errorf("renewal %d: period %v to %v", i, paid.PeriodStart, paid.PeriodEnd)
		}
	}
	sub := state(t, routes)["subscriptions"][0]["id"].(string)
	call(t, routes, "POST", "/dev/subscriptions/"+sub+"/cancel", `{"atPeriodEnd":true}`)
	c.Add(31 * 24 * time.Hour)
	if err := s.AdvanceTo(context.Background(), c.Now()); err != nil {
		t.Fatal(err)
	}
	evs := h.got()
	if end := evs[len(evs)-1]; end.Type != "customer.subscription.deleted" || !end.Created.Equal(t0.AddDate(0, 4, 0)) {
		t.Errorf("end: %s at %v, want deleted at the period end", end.Type, end.Created)
	}
	if code, _ := call(t, routes, "POST", "/dev/subscriptions/"+sub+"/renew", ""); code != 409 {
		t.Errorf("renewing an ended subscription: %d", code)
	}
}

func TestPaymentsSide(t *testing.T) {
	s, routes, h, _ := setup(t, 0)
	ctx := context.Background()
	a, _ := s.EnsureCustomer(ctx, "u1", "")
	b, _ := s.EnsureCustomer(ctx, "u1", "")
	if a != b || !strings.HasPrefix(a, "cus_") {
		t.Errorf("customers %q %q", a, b)
	}
	if _, err := s.CheckoutSession(ctx, billing.CheckoutRequest{UID: "u1", CustomerID: a, Plan: "Free", Kind: billing.PriceMonthly}); err != billing.ErrInvalidPlan {
		t.Errorf("Free: %v", err)
	}
	if u, _ := s.PortalSession(ctx, a); u != "http://localhost:8000/dev/portal/"+a {
		t.Errorf("portal %q", u)
	}
	co := checkout(t, s, billing.PriceMonthly)
	call(t, routes, "POST", "/dev/checkout/"+co.SessionID+"/complete", "")
	ids, err := s.CancelSubscriptions(ctx, a)
	if err != nil || len(ids) != 1 {
		t.Fatalf("cancel: %v %v", ids, err)
	}
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if evs := h.got(); evs[len(evs)-1].Type != "customer.subscription.deleted" {
		t.Errorf("last event %s", evs[len(evs)-1].Type)
	}
	if again, _ := s.CancelSubscriptions(ctx, a); len(again) != 0 {
		t.Errorf("cancelled again: %v", again)
	}
	if _, err := s.Charge(ctx, "ch_nope"); err == nil {
		t.Error("unknown charge found")
	}
	code, page := call(t, routes, "GET", "/dev/portal/"+a, "")
	if code != 200 || !strings.Contains(page, "canceled") || strings.Contains(page, `id="cancel-now"`) {
		t.Errorf("portal page after the end: %d", code)
	}
	if code, _ := call(t, routes, "GET", "/dev/nothing", ""); code != 404 {
		t.Errorf("unknown route: %d", code)
	}
}

// TestSubscriptionCheckoutExpiresTheOtherOpenSessions: two subscription
// checkouts opened one after the other (two tabs while on Free): the first
// is expired when the second opens, as Stripe's expire endpoint leaves it.
// Paying it answers 409 in the contract's error shape and sends nothing;
// its page says it is expired; only the second starts a subscription.
func TestSubscriptionCheckoutExpiresTheOtherOpenSessions(t *testing.T) {
	s, routes, h, _ := setup(t, 0)
	first := checkout(t, s, billing.PriceMonthly)
	topUp := checkout(t, s, billing.PriceInstant)
	second := checkout(t, s, billing.PriceMonthly)
	if err := s.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, cs := range state(t, routes)["sessions"] {
		status[cs["id"].(string)] = cs["status"].(string)
	}
	if status[first.SessionID] != "expired" || status[topUp.SessionID] != "expired" || status[second.SessionID] != "open" {
		t.Fatalf("sessions after the second subscription checkout: %v", status)
	}
	var expired []string
	for _, ev := range h.got() {
		if ev.Type != "checkout.session.expired" {
			t.Errorf("unexpected event %s", ev.Type)
		}
		expired = append(expired, ev.Type)
	}
	if len(expired) != 2 {
		t.Errorf("events sent: %v, want checkout.session.expired for each expired session", expired)
	}

	sent := len(h.got())
	code, body := call(t, routes, "POST", "/dev/checkout/"+first.SessionID+"/complete", "")
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); code != 409 || err != nil || e.Error.Code == "" || !strings.Contains(e.Error.Message, "expired") {
		t.Errorf("paying the expired session: %d %s", code, body)
	}
	if _, page := call(t, routes, "GET", "/dev/checkout/"+first.SessionID, ""); !strings.Contains(page, "This checkout is expired") || strings.Contains(page, `id="pay"`) {
		t.Errorf("the expired session's page still offers to pay")
	}
	if code, out := call(t, routes, "POST", "/dev/checkout/"+second.SessionID+"/complete", ""); code != 200 {
		t.Fatalf("paying the open session: %d %s", code, out)
	}
	var types []string
	for _, ev := range h.got()[sent:] {
		types = append(types, ev.Type)
	}
	if strings.Join(types, " ") != "checkout.session.completed invoice.paid" {
		t.Errorf("events after both payments: %v, want the second session's only", types)
	}
	if subs := state(t, routes)["subscriptions"]; len(subs) != 1 {
		t.Errorf("%d subscriptions, want 1", len(subs))
	}
}

// TestDelayedPaymentSucceedsOrFailsLater: a one-off purchase paid by bank
// debit completes unpaid (no charge yet), then its payment succeeds (a
// charge, checkout.session.async_payment_succeeded, paid) or fails
// (checkout.session.async_payment_failed, no charge), once; the checkout
// page offers it and then the two outcomes.
func TestDelayedPaymentSucceedsOrFailsLater(t *testing.T) {
	s, routes, h, _ := setup(t, 0)
	ok := checkout(t, s, billing.PriceInstant)
	if _, page := call(t, routes, "GET", "/dev/checkout/"+ok.SessionID, ""); !strings.Contains(page, `id="pay-delayed"`) {
		t.Errorf("the checkout page offers no delayed payment:\n%s", page)
	}
	if code, out := call(t, routes, "POST", "/dev/checkout/"+ok.SessionID+"/complete", `{"payment":"delayed"}`); code != 200 {
		t.Fatalf("complete delayed: %d %s", code, out)
	}
	if len(state(t, routes)["charges"]) != 0 {
		t.Errorf("a charge before the delayed payment succeeded")
	}
	if _, page := call(t, routes, "GET", "/dev/checkout/"+ok.SessionID, ""); !strings.Contains(page, `id="debit-succeeds"`) || !strings.Contains(page, `id="debit-fails"`) {
		t.Errorf("the page of a processing debit offers no outcome:\n%s", page)
	}
	if code, out := call(t, routes, "POST", "/dev/checkout/"+ok.SessionID+"/succeed", ""); code != 200 {
		t.Fatalf("succeed: %d %s", code, out)
	}
	for _, again := range []string{"succeed", "fail", "complete"} {
		if code, _ := call(t, routes, "POST", "/dev/checkout/"+ok.SessionID+"/"+again, ""); code != 409 {
			t.Errorf("%s after success: %d, want 409", again, code)
		}
	}

	bad := checkout(t, s, billing.PriceInstant)
	call(t, routes, "POST", "/dev/checkout/"+bad.SessionID+"/complete", "payment=delayed")
	if code, out := call(t, routes, "POST", "/dev/checkout/"+bad.SessionID+"/fail", `{}`); code != 200 {
		t.Fatalf("fail: %d %s", code, out)
	}
	sub := checkout(t, s, billing.PriceMonthly)
	if code, _ := call(t, routes, "POST", "/dev/checkout/"+sub.SessionID+"/complete", `{"payment":"delayed"}`); code != 409 {
		t.Errorf("a delayed subscription payment: %d, want 409", code)
	}
	if code, _ := call(t, routes, "POST", "/dev/checkout/"+sub.SessionID+"/complete", `{"payment":"cash"}`); code != 400 {
		t.Errorf("an unknown payment kind: %d, want 400", code)
	}
	if code, _ := call(t, routes, "POST", "/dev/checkout/cs_nope/succeed", ""); code != 404 {
		t.Errorf("unknown session: %d", code)
	}

	evs := h.got()
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	want := "checkout.session.completed checkout.session.async_payment_succeeded checkout.session.completed checkout.session.async_payment_failed"
	if strings.Join(types, " ") != want {
		t.Fatalf("events:\n got %s\nwant %s", strings.Join(types, " "), want)
	}
	unpaid, paid := evs[0].Change.(billing.CheckoutCompleted), evs[1].Change.(billing.CheckoutCompleted)
	if unpaid.Paid || !paid.Paid || unpaid.SessionID != ok.SessionID || paid.SessionID != ok.SessionID ||
		paid.Payment == "" || paid.Payment != unpaid.Payment || evs[1].UID != "u1" || evs[1].CustomerID == "" {
		t.Errorf("completed %+v, then succeeded %+v", unpaid, paid)
	}
	if charges := state(t, routes)["charges"]; len(charges) != 1 || charges[0]["payment_intent"] != paid.Payment || charges[0]["amount"] != float64(500) {
		t.Errorf("charges after one success and one failure: %v", charges)
	}
	if f, _ := evs[3].Change.(billing.CheckoutPaymentFailed); f.SessionID != bad.SessionID || f.Plan != "Basic" || evs[3].UID != "u1" {
		t.Errorf("failed: %+v", evs[3].Change)
	}
}
