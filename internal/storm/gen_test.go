package storm

import (
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/devstripe"

	"github.com/paymeter/paymeter/internal/clock"
)

// generator runs random lifecycles on the stand-in, through its Go API and
// its /dev routes (in process), as a customer, the portal and Stripe's
// dashboard would.
type generator struct {
	t        *testing.T
	stand    *devstripe.Stripe
	routes   http.Handler
	clock    *clock.Fixed
	rng      *mrand.Rand
	accounts map[string]*acct
	actions  map[string]int
	owners   *sync.Map // event id → uid
}

type acct struct {
	uid, customer string
	sub           string // the newest subscription, "" before the first
	live          bool   // it has not ended
	atPeriodEnd   bool   // set to cancel at period end
	plan          string
	charges       []charge
}

type charge struct {
	id               string
	amount, refunded int64
	disputed         bool
}

var plans = []string{"Basic", "Power"}

// run makes events until there are at least want.
func (g *generator) run(ctx context.Context, uids []string, want int) {
	g.actions = map[string]int{}
	for round := 0; len(g.stand.EventIDs()) < want; round++ {
		if round%6 == 5 {
			g.refreshCharges()
		}
		order := append([]string(nil), uids...)
		g.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, uid := range order {
			if len(g.stand.EventIDs()) >= want {
				break
			}
			n := len(g.stand.EventIDs())
			g.step(ctx, g.accounts[uid])
			for _, id := range g.stand.EventIDs()[n:] {
				g.owners.Store(id, uid)
			}
		}
		if round > 10*want {
			g.t.Fatal("the lifecycles make no events")
		}
	}
}

func (g *generator) step(ctx context.Context, a *acct) {
	g.clock.Add(time.Duration(3+g.rng.IntN(22)) * time.Minute)
	if !a.live {
		if a.sub == "" || g.rng.Float64() < 0.6 {
			g.subscribe(ctx, a, plans[g.rng.IntN(2)])
		} else {
			g.topUp(ctx, a)
		}
		return
	}
	sub := "/dev/subscriptions/" + a.sub
	switch r := g.rng.Float64(); {
	case r < 0.30:
		g.act("renew", sub+"/renew", "")
	case r < 0.38:
		g.act("fail", sub+"/fail", "")
	case r < 0.46:
		to := plans[0]
		if a.plan == to {
			to = plans[1]
		}
		if g.act("change plan", sub+"/update", fmt.Sprintf(`{"plan":%q}`, to)) {
			a.plan, a.atPeriodEnd = to, false
		}
	case r < 0.60:
		g.topUp(ctx, a)
	case r < 0.72:
		if c := g.pick(a, false); c != nil {
			left := c.amount - c.refunded
			amount := left
			if g.rng.IntN(2) == 0 {
				amount = 1 + g.rng.Int64N(left)
			}
			if g.act("refund", "/dev/charges/"+c.id+"/refund", fmt.Sprintf(`{"amount":%d}`, amount)) {
				c.refunded += amount
			}
		} else {
			g.act("renew", sub+"/renew", "")
		}
	case r < 0.78:
		if c := g.pick(a, true); c != nil {
			if g.act("dispute", "/dev/charges/"+c.id+"/dispute", "") {
				c.disputed = true
			}
		} else {
			g.topUp(ctx, a)
		}
	case r < 0.84:
		if !a.atPeriodEnd && g.act("cancel at period end", sub+"/cancel", `{"atPeriodEnd":true}`) {
			a.atPeriodEnd = true
		}
	case r < 0.89:
		if g.act("cancel now", sub+"/cancel", `{"atPeriodEnd":false}`) {
			a.live = false
		}
	case r < 0.92:
		ids := g.stand.EventIDs()
		g.act("resend", "/dev/events/"+ids[g.rng.IntN(len(ids))]+"/resend", "")
	default:
		g.act("renew", sub+"/renew", "")
	}
}

// pick returns a charge of a with money left, not disputed (and, for a
// dispute, not refunded at all), or nil.
func (g *generator) pick(a *acct, forDispute bool) *charge {
	var cs []*charge
	for i := range a.charges {
		c := &a.charges[i]
		if !c.disputed && c.amount > c.refunded && (!forDispute || c.refunded == 0) {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return nil
	}
	return cs[g.rng.IntN(len(cs))]
}

func (g *generator) subscribe(ctx context.Context, a *acct, plan string) {
	events := g.checkout(ctx, a, plan, billing.PriceMonthly, "subscribe")
	for _, id := range events {
		p, _ := g.stand.Payload(id)
		var ev struct {
			Type string
			Data struct {
				Object struct {
					Subscription string `json:"subscription"`
				} `json:"object"`
			} `json:"data"`
		}
		if err := json.Unmarshal(p, &ev); err != nil {
			g.t.Fatal(err)
		}
		if ev.Type == "checkout.session.completed" {
			a.sub, a.live, a.atPeriodEnd, a.plan = ev.Data.Object.Subscription, true, false, plan
		}
	}
}

func (g *generator) topUp(ctx context.Context, a *acct) {
	g.checkout(ctx, a, plans[g.rng.IntN(2)], billing.PriceInstant, "top-up")
}

func (g *generator) checkout(ctx context.Context, a *acct, plan, kind, name string) []string {
	co, err := g.stand.CheckoutSession(ctx, billing.CheckoutRequest{UID: a.uid, CustomerID: a.customer, Plan: plan, Kind: kind})
	if err != nil {
		g.t.Fatal(err)
	}
	status, events := g.post("/dev/checkout/"+co.SessionID+"/complete", "")
	if status != 200 && status != 202 {
		g.t.Fatalf("complete checkout: %d", status)
	}
	g.actions[name]++
	return events
}

// act runs a /dev action and reports whether the stand-in took it (it
// refuses, 409, what Stripe would refuse, such as renewing an ended
// subscription).
func (g *generator) act(name, path, body string) bool {
	status, _ := g.post(path, body)
	switch status {
	case 200, 202:
		g.actions[name]++
		return true
	case 409:
		return false
	}
	g.t.Fatalf("%s %s: status %d", name, path, status)
	return false
}

func (g *generator) post(path, body string) (int, []string) {
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	g.routes.ServeHTTP(rec, req)
	var out struct {
		Events []struct{ ID string } `json:"events"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	ids := make([]string, 0, len(out.Events))
	for _, e := range out.Events {
		ids = append(ids, e.ID)
	}
	return rec.Code, ids
}

// refreshCharges learns every account's charges from the stand-in's state.
func (g *generator) refreshCharges() {
	req := httptest.NewRequest("GET", "/dev/state", nil)
	rec := httptest.NewRecorder()
	g.routes.ServeHTTP(rec, req)
	var st struct {
		Customers []struct {
			ID       string            `json:"id"`
			Metadata map[string]string `json:"metadata"`
		} `json:"customers"`
		Charges []struct {
			ID             string `json:"id"`
			Customer       string `json:"customer"`
			Amount         int64  `json:"amount"`
			AmountRefunded int64  `json:"amount_refunded"`
			Disputed       bool   `json:"disputed"`
		} `json:"charges"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		g.t.Fatal(err)
	}
	byCustomer := map[string]*acct{}
	for _, a := range g.accounts {
		byCustomer[a.customer] = a
		a.charges = nil
	}
	for _, c := range st.Charges {
		if a := byCustomer[c.Customer]; a != nil {
			a.charges = append(a.charges, charge{id: c.ID, amount: c.Amount, refunded: c.AmountRefunded, disputed: c.Disputed})
		}
	}
}
