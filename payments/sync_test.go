package payments

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"testing"

	"github.com/stripe/stripe-go/v76"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/payments/stripemocktest"
)

// fakeCatalog is Stripe's products and prices, in memory, with the lookup
// key rules of the real API.
type fakeCatalog struct {
	products map[string]*stripe.Product
	prices   []*stripe.Price
	calls    int // writes
}

func newFakeCatalog() *fakeCatalog { return &fakeCatalog{products: map[string]*stripe.Product{}} }

func (f *fakeCatalog) product(_ context.Context, id string) (*stripe.Product, error) {
	return f.products[id], nil
}

func (f *fakeCatalog) putProduct(_ context.Context, id string, p *stripe.ProductParams, create bool) error {
	f.calls++
	if create != (f.products[id] == nil) {
		return fmt.Errorf("create=%v for product %s", create, id)
	}
	f.products[id] = &stripe.Product{ID: id, Name: *p.Name, Description: *p.Description, Active: *p.Active, Metadata: maps.Clone(p.Metadata)}
	return nil
}

func (f *fakeCatalog) activePrice(_ context.Context, key string) (*stripe.Price, error) {
	for _, p := range f.prices {
		if p.Active && p.LookupKey == key {
			return p, nil
		}
	}
	return nil, nil
}

func (f *fakeCatalog) newPrice(_ context.Context, p *stripe.PriceParams) (*stripe.Price, error) {
	f.calls++
	key := *p.LookupKey
	for _, old := range f.prices {
		if old.LookupKey == key {
			if p.TransferLookupKey == nil || !*p.TransferLookupKey {
				return nil, fmt.Errorf("lookup key %s already used", key)
			}
			old.LookupKey = ""
		}
	}
	pr := &stripe.Price{ID: fmt.Sprintf("price_%d", len(f.prices)+1), Active: true, LookupKey: key, UnitAmount: *p.UnitAmount,
		Currency: stripe.Currency(*p.Currency), Product: &stripe.Product{ID: *p.Product}, Metadata: maps.Clone(p.Metadata)}
	if p.Recurring != nil {
		pr.Recurring = &stripe.PriceRecurring{Interval: stripe.PriceRecurringInterval(*p.Recurring.Interval), IntervalCount: *p.Recurring.IntervalCount}
	}
	f.prices = append(f.prices, pr)
	return pr, nil
}

func (f *fakeCatalog) deactivatePrice(_ context.Context, id string) error {
	f.calls++
	for _, p := range f.prices {
		if p.ID == id {
			p.Active = false
			return nil
		}
	}
	return fmt.Errorf("no price %s", id)
}

func TestSyncTwiceChangesNothingTheSecondTime(t *testing.T) {
	ctx := context.Background()
	f := newFakeCatalog()
	c := billing.DefaultCatalog()

	dry, err := syncPlans(ctx, f, c, true)
	if err != nil || len(dry) != 6 || f.calls != 0 {
		t.Fatalf("dry run: %d changes %v, %d writes; want 6 changes (2 products, 4 prices) and no write", len(dry), err, f.calls)
	}
	first, err := syncPlans(ctx, f, c, false)
	if err != nil || len(first) != 6 {
		t.Fatalf("first sync: %v %v", first, err)
	}
	writes := f.calls
	second, err := syncPlans(ctx, f, c, false)
	if err != nil || len(second) != 0 || f.calls != writes {
		t.Fatalf("second sync changed %v (%d writes), err %v", second, f.calls-writes, err)
	}
	for _, key := range []string{"Basic_monthly_price", "Basic_instant_price", "Power_monthly_price", "Power_instant_price"} {
		if p, _ := f.activePrice(ctx, key); p == nil {
			t.Errorf("no active price %s", key)
		}
	}
}

func TestSyncChangedAmountMovesLookupKey(t *testing.T) {
	ctx := context.Background()
	f := newFakeCatalog()
	c := billing.DefaultCatalog()
	if _, err := syncPlans(ctx, f, c, false); err != nil {
		t.Fatal(err)
	}
	old, _ := f.activePrice(ctx, "Basic_monthly_price")
	for i, p := range c.Plans {
		if p.Name == "Basic" {
			prices := append([]billing.Price(nil), p.Prices...)
			for j := range prices {
				if prices[j].Kind == billing.PriceMonthly {
					prices[j].Amount = 700
				}
			}
			c.Plans[i].Prices = prices
		}
	}
	changes, err := syncPlans(ctx, f, c, false)
	if err != nil || len(changes) != 1 {
		t.Fatalf("changes %v, err %v; want one new price", changes, err)
	}
	cur, _ := f.activePrice(ctx, "Basic_monthly_price")
	if cur == nil || cur.ID == old.ID || cur.UnitAmount != 700 {
		t.Fatalf("lookup key now on %+v", cur)
	}
	if old.Active || old.LookupKey != "" {
		t.Errorf("old price still active (%v) or keyed (%q)", old.Active, old.LookupKey)
	}
	if again, _ := syncPlans(ctx, f, c, false); len(again) != 0 {
		t.Errorf("sync after the change changed %v", again)
	}
}

// TestSyncCreatePathAgainstStripeMock sends the requests a first sync makes
// on an empty account (stripe-mock always finds a product, so the create
// path is driven directly).
func TestSyncCreatePathAgainstStripeMock(t *testing.T) {
	s := New(Config{SecretKey: "sk_test_123", PublicURL: "http://localhost", BackendURL: stripemocktest.Start(t), HTTPClient: http.DefaultClient})
	api := stripeCatalog{s}
	ctx := context.Background()
	p := &stripe.ProductParams{Name: stripe.String("Paymeter Basic"), Description: stripe.String("1000 credits a month"),
		Active: stripe.Bool(true), Metadata: map[string]string{MetaPlan: "Basic"}}
	if err := api.putProduct(ctx, ProductID("Basic"), p, true); err != nil {
		t.Fatalf("create product: %v", err)
	}
	if err := api.deactivatePrice(ctx, "price_123"); err != nil {
		t.Fatalf("deactivate price: %v", err)
	}
}
