package payments

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/stripe/stripe-go/v76"

	"github.com/paymeter/paymeter/billing"
)

// catalogAPI is the part of Stripe the plan sync uses.
type catalogAPI interface {
	// product returns the product with id, or nil if there is none.
	product(ctx context.Context, id string) (*stripe.Product, error)
	putProduct(ctx context.Context, id string, p *stripe.ProductParams, create bool) error
	// activePrice returns the active price with the lookup key, or nil.
	activePrice(ctx context.Context, lookupKey string) (*stripe.Price, error)
	newPrice(ctx context.Context, p *stripe.PriceParams) (*stripe.Price, error)
	deactivatePrice(ctx context.Context, id string) error
}

// ProductID is the Stripe product id of a plan.
func ProductID(plan string) string { return "paymeter_" + strings.ToLower(plan) }

// SyncPlans makes Stripe's products and prices match the paid plans of c:
// one product per plan, and a price per kind found by its lookup key. A
// changed amount makes a new price that takes the lookup key over
// (transfer_lookup_key) and deactivates the old one. With dryRun it only
// says what it would do. It returns one line per change: none when Stripe
// already matches, so running it twice changes nothing the second time.
func (s *Stripe) SyncPlans(ctx context.Context, c billing.Catalog, dryRun bool) ([]string, error) {
	return syncPlans(ctx, stripeCatalog{s}, c, dryRun)
}

func syncPlans(ctx context.Context, api catalogAPI, c billing.Catalog, dryRun bool) ([]string, error) {
	var changes []string
	for _, plan := range c.Plans {
		if !plan.Paid() {
			continue
		}
		id := ProductID(plan.Name)
		meta := map[string]string{MetaPlan: plan.Name, "credits": strconv.FormatInt(plan.Credits, 10)}
		name := "Paymeter " + plan.Name
		desc := fmt.Sprintf("%d credits a %s", plan.Credits, plan.Period)
		prod, err := api.product(ctx, id)
		if err != nil {
			return changes, err
		}
		if prod == nil || !prod.Active || prod.Name != name || prod.Description != desc || !maps.Equal(prod.Metadata, meta) {
			verb := "update"
			if prod == nil {
				verb = "create"
			}
			changes = append(changes, fmt.Sprintf("%s product %s (%s: %s)", verb, id, name, desc))
			if !dryRun {
				p := &stripe.ProductParams{Name: stripe.String(name), Description: stripe.String(desc), Active: stripe.Bool(true), Metadata: meta}
				if err := api.putProduct(ctx, id, p, prod == nil); err != nil {
					return changes, err
				}
			}
		}
		for _, pr := range plan.Prices {
			ch, err := syncPrice(ctx, api, id, plan, pr, dryRun)
			if ch != "" {
				changes = append(changes, ch)
			}
			if err != nil {
				return changes, err
			}
		}
	}
	return changes, nil
}

func syncPrice(ctx context.Context, api catalogAPI, productID string, plan billing.Plan, pr billing.Price, dryRun bool) (string, error) {
	key := billing.LookupKey(plan.Name, pr.Kind)
	cur, err := api.activePrice(ctx, key)
	if err != nil {
		return "", err
	}
	monthly := pr.Kind == billing.PriceMonthly
	if cur != nil && cur.UnitAmount == pr.Amount && strings.EqualFold(string(cur.Currency), pr.Currency) &&
		(cur.Recurring != nil) == monthly && cur.Metadata[MetaPlan] == plan.Name &&
		(cur.Product != nil && cur.Product.ID == productID) &&
		(!monthly || (cur.Recurring.Interval == stripe.PriceRecurringIntervalMonth && cur.Recurring.IntervalCount == 1)) {
		return "", nil
	}
	change := fmt.Sprintf("create price %s: %d %s", key, pr.Amount, pr.Currency)
	if monthly {
		change += " a month"
	}
	if cur != nil {
		change += fmt.Sprintf(", moving the lookup key from %s and deactivating it", cur.ID)
	}
	if dryRun {
		return change, nil
	}
	p := &stripe.PriceParams{
		Product:           stripe.String(productID),
		Currency:          stripe.String(strings.ToLower(pr.Currency)),
		UnitAmount:        stripe.Int64(pr.Amount),
		LookupKey:         stripe.String(key),
		TransferLookupKey: stripe.Bool(true),
		Metadata:          map[string]string{MetaPlan: plan.Name, MetaKind: pr.Kind},
	}
	if monthly {
		p.Recurring = &stripe.PriceRecurringParams{Interval: stripe.String(string(stripe.PriceRecurringIntervalMonth)), IntervalCount: stripe.Int64(1)}
	}
	if _, err := api.newPrice(ctx, p); err != nil {
		return change, err
	}
	if cur != nil {
		if err := api.deactivatePrice(ctx, cur.ID); err != nil {
			return change, err
		}
	}
	return change, nil
}

// stripeCatalog is catalogAPI on the Stripe API.
type stripeCatalog struct{ s *Stripe }

func (c stripeCatalog) product(ctx context.Context, id string) (*stripe.Product, error) {
	p := &stripe.ProductParams{}
	p.Context = ctx
	prod, err := c.s.sc.Products.Get(id, p)
	if isMissing(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get product %s: %w", id, err)
	}
	return prod, nil
}

func (c stripeCatalog) putProduct(ctx context.Context, id string, p *stripe.ProductParams, create bool) error {
	p.Context = ctx
	var err error
	if create {
		p.ID = stripe.String(id)
		p.SetIdempotencyKey("paymeter-product-" + id)
		_, err = c.s.sc.Products.New(p)
	} else {
		_, err = c.s.sc.Products.Update(id, p)
	}
	if err != nil {
		return fmt.Errorf("save product %s: %w", id, err)
	}
	return nil
}

func (c stripeCatalog) activePrice(ctx context.Context, key string) (*stripe.Price, error) {
	p := &stripe.PriceListParams{LookupKeys: []*string{stripe.String(key)}, Active: stripe.Bool(true)}
	p.Context = ctx
	it := c.s.sc.Prices.List(p)
	for it.Next() {
		return it.Price(), nil
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("find price %s: %w", key, err)
	}
	return nil, nil
}

func (c stripeCatalog) newPrice(ctx context.Context, p *stripe.PriceParams) (*stripe.Price, error) {
	p.Context = ctx
	pr, err := c.s.sc.Prices.New(p)
	if err != nil {
		return nil, fmt.Errorf("create price %s: %w", stripe.StringValue(p.LookupKey), err)
	}
	return pr, nil
}

func (c stripeCatalog) deactivatePrice(ctx context.Context, id string) error {
	p := &stripe.PriceParams{Active: stripe.Bool(false)}
	p.Context = ctx
	if _, err := c.s.sc.Prices.Update(id, p); err != nil {
		return fmt.Errorf("deactivate price %s: %w", id, err)
	}
	return nil
}
