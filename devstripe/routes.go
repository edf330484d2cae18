package devstripe

import (
	"context"
	"encoding/json"
	"html/template"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/httpjson"
)

// stripeSignature is the Stripe-Signature header of payload at t.
func stripeSignature(payload []byte, secret string, t time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: t}).Header
}

// Routes returns the handler of the /dev routes of the HTTP contract, except
// POST /dev/clock/advance, which the dev server serves (it moves its clock
// and tasks, then calls AdvanceTo).
func (s *Stripe) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dev/checkout/{id}", s.checkoutPage)
	mux.HandleFunc("POST /dev/checkout/{id}/complete", s.act(func(r *http.Request, in actionInput) (string, []*delivery, error) {
		if in.Payment != "" && in.Payment != "delayed" {
			return "", nil, billing.Errorf(billing.CodeBadRequest, `payment is "delayed" or absent`)
		}
		ds, err := s.complete(r.PathValue("id"), in.Payment == "delayed")
		return s.sessions[r.PathValue("id")].successURL(), ds, err
	}))
	for _, outcome := range []string{"succeed", "fail"} {
		mux.HandleFunc("POST /dev/checkout/{id}/"+outcome, s.act(func(r *http.Request, in actionInput) (string, []*delivery, error) {
			ds, err := s.settleDelayed(r.PathValue("id"), outcome == "succeed")
			cs := s.sessions[r.PathValue("id")]
			if outcome == "fail" && cs != nil {
				return cs.CancelURL, ds, err
			}
			return cs.successURL(), ds, err
		}))
	}
	mux.HandleFunc("POST /dev/subscriptions/{id}/renew", s.act(s.onSubscription(func(sub *subscription, _ actionInput, at int64) ([]*delivery, error) {
		if ended(sub) {
			return nil, errConflict("subscription %s has ended", sub.ID)
		}
		return []*delivery{s.renew(sub, at)}, nil
	})))
	mux.HandleFunc("POST /dev/subscriptions/{id}/fail", s.act(s.onSubscription(func(sub *subscription, _ actionInput, at int64) ([]*delivery, error) {
		if ended(sub) {
			return nil, errConflict("subscription %s has ended", sub.ID)
		}
		return []*delivery{s.fail(sub, at)}, nil
	})))
	mux.HandleFunc("POST /dev/subscriptions/{id}/update", s.act(s.onSubscription(func(sub *subscription, in actionInput, at int64) ([]*delivery, error) {
		return s.change(sub, in.Plan, at)
	})))
	mux.HandleFunc("POST /dev/subscriptions/{id}/cancel", s.act(s.onSubscription(func(sub *subscription, in actionInput, at int64) ([]*delivery, error) {
		if in.AtPeriodEnd {
			d, err := s.cancelAtPeriodEnd(sub, at)
			if err != nil {
				return nil, err
			}
			return []*delivery{d}, nil
		}
		if ended(sub) {
			return nil, errConflict("subscription %s has ended", sub.ID)
		}
		return []*delivery{s.endAt(sub, at)}, nil
	})))
	mux.HandleFunc("POST /dev/charges/{id}/refund", s.act(s.onCharge(func(ch *charge, in actionInput, at int64) (*delivery, error) {
		return s.refund(ch, in.Amount, at)
	})))
	mux.HandleFunc("POST /dev/charges/{id}/dispute", s.act(s.onCharge(func(ch *charge, _ actionInput, at int64) (*delivery, error) {
		return s.dispute(ch, at)
	})))
	mux.HandleFunc("POST /dev/events/{id}/resend", s.act(func(r *http.Request, _ actionInput) (string, []*delivery, error) {
		d, err := s.resend(r.PathValue("id"))
		if err != nil {
			return "", nil, err
		}
		return "", []*delivery{d}, nil
	}))
	mux.HandleFunc("GET /dev/portal/{customer}", s.portalPage)
	mux.HandleFunc("GET /dev/state", s.state)
	mux.HandleFunc("/dev/", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Fail(w, r, nil, billing.Errorf(billing.CodeNotFound, "no such route in the Stripe stand-in"))
	})
	return mux
}

func (cs *session) successURL() string {
	if cs == nil {
		return ""
	}
	return cs.SuccessURL
}

// actionInput is the body of a /dev action: JSON, or a form from the
// stand-in's own pages.
type actionInput struct {
	Plan        string `json:"plan"`
	AtPeriodEnd bool   `json:"atPeriodEnd"`
	Amount      int64  `json:"amount"`
	Payment     string `json:"payment"` // "delayed": complete a checkout unpaid, as a bank debit does
	Return      string `json:"-"`       // where a form goes back to
	form        bool
}

func readInput(r *http.Request) (actionInput, error) {
	var in actionInput
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/x-www-form-urlencoded" {
		if err := r.ParseForm(); err != nil {
			return in, billing.Errorf(billing.CodeBadRequest, "unreadable form")
		}
		in.form = true
		in.Plan = r.PostForm.Get("plan")
		in.AtPeriodEnd = r.PostForm.Get("atPeriodEnd") == "true"
		in.Amount, _ = strconv.ParseInt(r.PostForm.Get("amount"), 10, 64)
		in.Payment = r.PostForm.Get("payment")
		in.Return = r.PostForm.Get("return")
		return in, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		return in, billing.Errorf(billing.CodeBadRequest, "unreadable body")
	}
	if strings.TrimSpace(string(body)) == "" {
		return in, nil
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return in, billing.Errorf(billing.CodeBadRequest, "malformed JSON")
	}
	return in, nil
}

// act runs one action under the lock, sends its events, waits for their
// delivery (up to Config.Wait) and answers: a form goes back to a page; a
// JSON call gets the events and whether they were delivered (200) or are
// still being retried (202).
func (s *Stripe) act(fn func(r *http.Request, in actionInput) (redirect string, ds []*delivery, err error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		in, err := readInput(r)
		if err != nil {
			httpjson.Fail(w, r, nil, err)
			return
		}
		s.mu.Lock()
		redirect, ds, err := fn(r, in)
		s.mu.Unlock()
		if err != nil {
			httpjson.Fail(w, r, nil, err)
			return
		}
		s.enqueue(ds...)
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Wait)
		defer cancel()
		delivered := wait(ctx, ds) == nil
		if in.form {
			if in.Return != "" && strings.HasPrefix(in.Return, "/dev/") {
				redirect = in.Return
			}
			if redirect == "" {
				redirect = s.cfg.PublicURL + "/"
			}
			http.Redirect(w, r, redirect, http.StatusSeeOther)
			return
		}
		type sent struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		}
		out := struct {
			Events    []sent `json:"events"`
			Delivered bool   `json:"delivered"`
		}{Events: []sent{}, Delivered: delivered}
		for _, d := range ds {
			out.Events = append(out.Events, sent{d.ev.ID, d.ev.Type})
		}
		status := http.StatusOK
		if !delivered {
			status = http.StatusAccepted
		}
		writeJSON(w, status, out)
	}
}

func (s *Stripe) onSubscription(fn func(sub *subscription, in actionInput, at int64) ([]*delivery, error)) func(*http.Request, actionInput) (string, []*delivery, error) {
	return func(r *http.Request, in actionInput) (string, []*delivery, error) {
		sub, ok := s.subs[r.PathValue("id")]
		if !ok {
			return "", nil, errNotFound("subscription", r.PathValue("id"))
		}
		ds, err := fn(sub, in, s.now().Unix())
		return s.cfg.PublicURL + "/dev/portal/" + sub.Customer, ds, err
	}
}

func (s *Stripe) onCharge(fn func(ch *charge, in actionInput, at int64) (*delivery, error)) func(*http.Request, actionInput) (string, []*delivery, error) {
	return func(r *http.Request, in actionInput) (string, []*delivery, error) {
		ch, ok := s.charges[r.PathValue("id")]
		if !ok {
			return "", nil, errNotFound("charge", r.PathValue("id"))
		}
		d, err := fn(ch, in, s.now().Unix())
		if err != nil {
			return "", nil, err
		}
		return "", []*delivery{d}, nil
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// state serves GET /dev/state: everything the stand-in holds, in creation
// order, and the events it sent with how their delivery went.
func (s *Stripe) state(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]any{}
	collect := func(kind string, get func(id string) any) {
		items := []any{}
		for _, id := range s.order[kind] {
			items = append(items, get(id))
		}
		out[kind] = items
	}
	collect("customers", func(id string) any { return s.customers[id] })
	collect("sessions", func(id string) any { return s.sessions[id] })
	collect("subscriptions", func(id string) any { return s.subs[id] })
	collect("invoices", func(id string) any { return s.invoices[id] })
	collect("charges", func(id string) any { return s.charges[id] })
	collect("disputes", func(id string) any { return s.disputes[id] })
	collect("events", func(id string) any { return s.events[id] })
	writeJSON(w, http.StatusOK, out)
}

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"money": func(amount int64, currency string) string {
		sym := map[string]string{"gbp": "£", "usd": "$", "eur": "€"}[currency]
		if sym == "" {
			sym = strings.ToUpper(currency) + " "
		}
		return sym + strconv.FormatInt(amount/100, 10) + "." + strconv.FormatInt(amount%100/10, 10) + strconv.FormatInt(amount%10, 10)
	},
	"date": func(t int64) string { return time.Unix(t, 0).UTC().Format("2 Jan 2006") },
}).Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}} · Stripe stand-in</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1a1a1a}
.note{font-size:.85rem;color:#555;border-left:3px solid #635bff;padding-left:.75rem}
button{font:inherit;padding:.6rem 1.2rem;border-radius:6px;border:1px solid #635bff;background:#635bff;color:#fff;cursor:pointer;margin:.25rem .5rem .25rem 0}
button.secondary{background:#fff;color:#635bff}form{display:inline}section{border:1px solid #ddd;border-radius:8px;padding:1rem;margin:1rem 0}</style>
</head><body>
<p class="note" role="note">Offline Stripe stand-in for local development: no card is charged and no data leaves this machine.</p>{{end}}

{{define "checkout"}}{{template "head" "Checkout"}}
<main>
<h1>Pay Paymeter</h1>
<p>{{.Metadata.plan}} plan: <strong>{{money .AmountTotal .Currency}}</strong>{{if eq .Mode "subscription"}} a month{{else}}, once{{end}}.</p>
{{if eq .Status "open"}}
<form method="post" action="/dev/checkout/{{.ID}}/complete">
<button id="pay" type="submit" aria-label="Pay {{money .AmountTotal .Currency}}">Pay {{money .AmountTotal .Currency}}</button>
</form>
{{if eq .Mode "payment"}}<form method="post" action="/dev/checkout/{{.ID}}/complete"><input type="hidden" name="payment" value="delayed"><input type="hidden" name="return" value="/dev/checkout/{{.ID}}">
<button id="pay-delayed" class="secondary" type="submit" aria-label="Pay by bank debit, settled later">Pay by bank debit (settles later)</button>
</form>{{end}}
<form method="get" action="{{.CancelURL}}">
<button id="cancel" class="secondary" type="submit" aria-label="Cancel and return to Paymeter">Cancel</button>
</form>
{{else if .Awaiting}}
<p role="status">The bank debit is processing: no credits until it succeeds.</p>
<form method="post" action="/dev/checkout/{{.ID}}/succeed">
<button id="debit-succeeds" type="submit" aria-label="The bank debit succeeds">Debit succeeds</button></form>
<form method="post" action="/dev/checkout/{{.ID}}/fail">
<button id="debit-fails" class="secondary" type="submit" aria-label="The bank debit fails">Debit fails</button></form>
{{else}}
<p role="status">This checkout is {{.Status}}.</p>
<p><a href="{{.SuccessURL}}">Return to Paymeter</a></p>
{{end}}
</main></body></html>{{end}}

{{define "portal"}}{{template "head" "Billing portal"}}
<main>
<h1>Billing portal</h1>
<p>Customer {{.Customer}}</p>
{{range .Subs}}{{$sub := .}}
<section aria-label="Subscription {{.ID}}">
<h2>{{.Plan}} subscription</h2>
<p>Status: <strong>{{.Sub.Status}}</strong>{{if .Sub.CancelAtPeriodEnd}}, ends {{date .Sub.CurrentPeriodEnd}}{{else if ne .Sub.Status "canceled"}}, renews {{date .Sub.CurrentPeriodEnd}}{{end}}</p>
{{if ne .Sub.Status "canceled"}}
{{range .Others}}
<form method="post" action="/dev/subscriptions/{{$sub.ID}}/update"><input type="hidden" name="plan" value="{{.}}">
<button type="submit" id="change-{{.}}" aria-label="Change to {{.}}">Change to {{.}}</button></form>
{{end}}
{{if not .Sub.CancelAtPeriodEnd}}
<form method="post" action="/dev/subscriptions/{{.ID}}/cancel"><input type="hidden" name="atPeriodEnd" value="true">
<button type="submit" class="secondary" id="cancel-at-period-end" aria-label="Cancel at period end">Cancel at period end</button></form>
{{end}}
<form method="post" action="/dev/subscriptions/{{.ID}}/cancel"><input type="hidden" name="atPeriodEnd" value="false">
<button type="submit" class="secondary" id="cancel-now" aria-label="Cancel now">Cancel now</button></form>
{{end}}
</section>
{{else}}<p>No subscriptions.</p>{{end}}
<p><a id="return" href="{{.Return}}">Return to Paymeter</a></p>
</main></body></html>{{end}}
`))

func (s *Stripe) checkoutPage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	cs, ok := s.sessions[r.PathValue("id")]
	var view session
	if ok {
		view = *cs
	}
	s.mu.Unlock()
	if !ok {
		http.Error(w, "no such checkout session", http.StatusNotFound)
		return
	}
	render(w, "checkout", view)
}

type portalSub struct {
	ID     string
	Plan   string
	Sub    subscription
	Others []string
}

func (s *Stripe) portalPage(w http.ResponseWriter, r *http.Request) {
	cus := r.PathValue("customer")
	s.mu.Lock()
	_, ok := s.customers[cus]
	var subs []portalSub
	for _, id := range s.order["subscriptions"] {
		sub := s.subs[id]
		if sub.Customer != cus {
			continue
		}
		ps := portalSub{ID: sub.ID, Plan: s.planPrice(sub).Metadata["plan"], Sub: *sub}
		for _, p := range s.cfg.Catalog.Plans {
			if _, ok := p.Price(billing.PriceMonthly); ok && p.Name != ps.Plan {
				ps.Others = append(ps.Others, p.Name)
			}
		}
		subs = append(subs, ps)
	}
	s.mu.Unlock()
	if !ok {
		http.Error(w, "no such customer", http.StatusNotFound)
		return
	}
	render(w, "portal", struct {
		Customer string
		Subs     []portalSub
		Return   string
	}{cus, subs, s.cfg.PublicURL + "/"})
}

func render(w http.ResponseWriter, name string, v any) {
	var b strings.Builder
	if err := pages.ExecuteTemplate(&b, name, v); err != nil {
		http.Error(w, "render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, b.String())
}
