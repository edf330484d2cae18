package payments_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/payments"
	"github.com/paymeter/paymeter/payments/stripemocktest"
)

// recorder counts the requests the adapter makes and what stripe-mock
// answered to each.
type recorder struct {
	mu   sync.Mutex
	reqs []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	path := req.URL.Path
	if req.URL.RawQuery != "" {
		path += "?" + req.URL.RawQuery
	}
	r.reqs = append(r.reqs, req.Method+" "+path+" "+http.StatusText(status))
	return resp, err
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

func newAdapter(t *testing.T) (*payments.Stripe, *recorder) {
	t.Helper()
	rec := &recorder{}
	s := payments.New(payments.Config{SecretKey: "sk_test_123", PublicURL: "https://app.example.com/",
		BackendURL: stripemocktest.Start(t), HTTPClient: &http.Client{Transport: rec}})
	return s, rec
}

// TestAdapterAgainstStripeMock makes every request the adapter makes, and
// stripe-mock (API 2023-10-16, strict version check) accepts each.
func TestAdapterAgainstStripeMock(t *testing.T) {
	s, rec := newAdapter(t)
	ctx := context.Background()

	cus, err := s.EnsureCustomer(ctx, "uid-1", "a@example.com")
	if err != nil || cus == "" {
		t.Fatalf("EnsureCustomer: %q %v", cus, err)
	}
	for _, kind := range []string{billing.PriceMonthly, billing.PriceInstant} {
		co, err := s.CheckoutSession(ctx, billing.CheckoutRequest{UID: "uid-1", CustomerID: cus, Plan: "Basic", Kind: kind})
		if err != nil || co.SessionID == "" || co.URL == "" {
			t.Fatalf("CheckoutSession %s: %+v %v", kind, co, err)
		}
	}
	ids, err := s.CancelSubscriptions(ctx, cus)
	if err != nil || len(ids) == 0 {
		t.Fatalf("CancelSubscriptions: %v %v", ids, err)
	}
	url, err := s.PortalSession(ctx, cus)
	if err != nil || url == "" {
		t.Fatalf("PortalSession: %q %v", url, err)
	}
	ch, err := s.Charge(ctx, "ch_123")
	if err != nil || ch.ID == "" || ch.Amount <= 0 {
		t.Fatalf("Charge: %+v %v", ch, err)
	}
	changes, err := s.SyncPlans(ctx, billing.DefaultCatalog(), false)
	if err != nil {
		t.Fatalf("SyncPlans: %v (changes %v)", err, changes)
	}
	if _, err := s.SyncPlans(ctx, billing.DefaultCatalog(), true); err != nil {
		t.Fatalf("SyncPlans dry run: %v", err)
	}

	reqs := rec.all()
	for _, r := range reqs {
		if !strings.HasSuffix(r, " OK") {
			t.Errorf("stripe-mock refused %s", r)
		}
	}
	for _, want := range []string{"POST /v1/customers", "POST /v1/checkout/sessions", "GET /v1/prices",
		"DELETE /v1/subscriptions/", "POST /v1/billing_portal/sessions", "GET /v1/charges/ch_123",
		"GET /v1/products/paymeter_basic", "POST /v1/products/paymeter_basic", "POST /v1/prices"} {
		found := false
		for _, r := range reqs {
			found = found || strings.HasPrefix(r, want)
		}
		if !found {
			t.Errorf("no request %s among %v", want, reqs)
		}
	}
	t.Logf("%d requests, all accepted; sync changes: %v", len(reqs), changes)
}

// TestSubscriptionCheckoutExpiresTheOtherOpenSessions: opening a
// subscription session lists the customer's open sessions and expires each
// but the new one, with requests stripe-mock accepts; a top-up session
// expires nothing. (stripe-mock lists one open fixture session, whose id
// differs from every session it creates.)
func TestSubscriptionCheckoutExpiresTheOtherOpenSessions(t *testing.T) {
	s, rec := newAdapter(t)
	ctx := context.Background()
	if _, err := s.CheckoutSession(ctx, billing.CheckoutRequest{UID: "uid-1", CustomerID: "cus_1", Plan: "Basic", Kind: billing.PriceInstant}); err != nil {
		t.Fatal(err)
	}
	for _, r := range rec.all() {
		if strings.Contains(r, "/expire") || strings.HasPrefix(r, "GET /v1/checkout/sessions") {
			t.Errorf("a top-up session touched the others: %s", r)
		}
	}
	co, err := s.CheckoutSession(ctx, billing.CheckoutRequest{UID: "uid-1", CustomerID: "cus_1", Plan: "Basic", Kind: billing.PriceMonthly})
	if err != nil {
		t.Fatal(err)
	}
	var listed bool
	var expired []string
	for _, r := range rec.all() {
		if !strings.HasSuffix(r, " OK") {
			t.Errorf("stripe-mock refused %s", r)
		}
		listed = listed || strings.HasPrefix(r, "GET /v1/checkout/sessions?customer=cus_1&status=open ")
		if strings.HasPrefix(r, "POST /v1/checkout/sessions/") && strings.Contains(r, "/expire ") {
			expired = append(expired, r)
		}
	}
	if !listed || len(expired) != 1 || strings.Contains(expired[0], co.SessionID) {
		t.Errorf("new session %s: listed the open ones %v, expired %v", co.SessionID, listed, expired)
	}
	// The session to keep is never expired.
	open, err := s.ExpireOtherSessions(ctx, "cus_1", "")
	if err != nil || len(open) != 1 {
		t.Fatalf("ExpireOtherSessions: %v %v", open, err)
	}
	if again, err := s.ExpireOtherSessions(ctx, "cus_1", open[0]); err != nil || len(again) != 0 {
		t.Errorf("keeping the only open session expired %v (%v)", again, err)
	}
}
