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
	r.reqs = append(r.reqs, req.Method+" "+req.URL.Path+" "+http.StatusText(status))
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
