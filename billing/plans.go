package billing

import (
	_ "embed"
	"encoding/json"
	"fmt"
)

// Plan names used in code; plans.json holds the whole catalog.
const (
	PlanFree  = "Free"
	PlanBasic = "Basic"
)

// Price kinds: a one-off purchase or a monthly subscription.
const (
	PriceInstant = "instant"
	PriceMonthly = "monthly"
)

// Plan is one entry of the catalog.
type Plan struct {
	Name    string  `json:"name" firestore:"name"`
	Credits int64   `json:"credits" firestore:"credits"`
	Period  string  `json:"period" firestore:"period"`
	Prices  []Price `json:"prices" firestore:"prices"`
}

// Price is what a plan costs, in the smallest currency unit.
type Price struct {
	Kind     string `json:"kind" firestore:"kind"`
	Amount   int64  `json:"amount" firestore:"amount"`
	Currency string `json:"currency" firestore:"currency"`
}

// Paid reports whether the plan is sold (has prices).
func (p Plan) Paid() bool { return len(p.Prices) > 0 }

// Price returns the plan's price of the given kind.
func (p Plan) Price(kind string) (Price, bool) {
	for _, pr := range p.Prices {
		if pr.Kind == kind {
			return pr, true
		}
	}
	return Price{}, false
}

// LookupKey is the Stripe lookup key of a plan's price: "<Plan>_<kind>_price".
func LookupKey(plan, kind string) string { return plan + "_" + kind + "_price" }

// Catalog is the list of plans, in display order.
type Catalog struct {
	Plans []Plan `json:"plans"`
}

//go:embed plans.json
var plansJSON []byte

// DefaultCatalog returns the catalog in plans.json, the repo's plans file.
func DefaultCatalog() Catalog {
	c, err := ParseCatalog(plansJSON)
	if err != nil {
		panic(err) // plans.json is part of the build and tested
	}
	return c
}

// ParseCatalog decodes and validates a plans file. It returns an error naming
// the first problem found.
func ParseCatalog(data []byte) (Catalog, error) {
	var c Catalog
	if err := json.Unmarshal(data, &c); err != nil {
		return Catalog{}, fmt.Errorf("parse plans: %w", err)
	}
	seen := map[string]bool{}
	hasFree := false
	for _, p := range c.Plans {
		switch {
		case p.Name == "" || seen[p.Name]:
			return Catalog{}, fmt.Errorf("plans: missing or repeated name %q", p.Name)
		case p.Credits <= 0:
			return Catalog{}, fmt.Errorf("plans: %s: credits must be positive", p.Name)
		case p.Period != "week" && p.Period != "month":
			return Catalog{}, fmt.Errorf("plans: %s: period must be week or month", p.Name)
		}
		seen[p.Name] = true
		if p.Name == PlanFree {
			hasFree = true
			if p.Paid() {
				return Catalog{}, fmt.Errorf("plans: Free has prices")
			}
		}
		for _, pr := range p.Prices {
			if (pr.Kind != PriceInstant && pr.Kind != PriceMonthly) || pr.Amount <= 0 || len(pr.Currency) != 3 {
				return Catalog{}, fmt.Errorf("plans: %s: bad price %+v", p.Name, pr)
			}
		}
	}
	if !hasFree {
		return Catalog{}, fmt.Errorf("plans: no Free plan")
	}
	return c, nil
}

// Plan returns the named plan.
func (c Catalog) Plan(name string) (Plan, bool) {
	for _, p := range c.Plans {
		if p.Name == name {
			return p, true
		}
	}
	return Plan{}, false
}

// Free returns the Free plan.
func (c Catalog) Free() Plan {
	p, _ := c.Plan(PlanFree)
	return p
}

// PaidPlan returns the named plan if it can be bought, or ErrInvalidPlan.
func (c Catalog) PaidPlan(name string) (Plan, error) {
	p, ok := c.Plan(name)
	if !ok || !p.Paid() {
		return Plan{}, ErrInvalidPlan
	}
	return p, nil
}
