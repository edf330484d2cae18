package payments_test

import (
	"context"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/devstripe"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/payments"
)

// Fuzz targets of the webhook's verification and decoding. Their seeds (the
// f.Add calls, and testdata/fuzz/<Target>/ when present) run as plain tests
// in `go test ./...`; a longer run is
//
//	go test -run '^$' -fuzz '^FuzzVerifyEvent$' -fuzztime 60s ./payments
//
// and likewise for FuzzSignedEventFields and FuzzSignedEventBody.

var (
	standinOnce     sync.Once
	standinPayloads [][]byte
)

// standinEvents returns the bodies of one event of every type the webhook
// applies, as the offline stand-in sends them (Stripe's 2023-10-16 shapes),
// made once with deterministic ids: a subscription that renews, fails,
// changes plan, is cancelled at period end and then ends; a top-up that is
// part refunded; a top-up that is disputed.
func standinEvents(tb testing.TB) [][]byte {
	tb.Helper()
	standinOnce.Do(func() {
		c := clock.NewFixed(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
		accept := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
		s := devstripe.New(devstripe.Config{PublicURL: "http://paymeter.test", WebhookSecret: secret, Webhook: accept,
			Catalog: billing.DefaultCatalog(), Clock: c, Random: mrand.NewChaCha8([32]byte{'f', 'u', 'z', 'z'})})
		defer s.Close()
		routes := s.Routes()
		act := func(path, body string) {
			req := httptest.NewRequest("POST", path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			routes.ServeHTTP(rec, req)
			if rec.Code != 200 {
				tb.Fatalf("stand-in %s: %d %s", path, rec.Code, rec.Body)
			}
		}
		last := func(kind string) string {
			req := httptest.NewRequest("GET", "/dev/state", nil)
			rec := httptest.NewRecorder()
			routes.ServeHTTP(rec, req)
			var st map[string][]map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || len(st[kind]) == 0 {
				tb.Fatalf("stand-in state: %v", err)
			}
			return st[kind][len(st[kind])-1]["id"].(string)
		}
		ctx := context.Background()
		cus, _ := s.EnsureCustomer(ctx, "u1", "u1@example.com")
		buy := func(plan, kind string) {
			co, err := s.CheckoutSession(ctx, billing.CheckoutRequest{UID: "u1", CustomerID: cus, Plan: plan, Kind: kind})
			if err != nil {
				tb.Fatal(err)
			}
			act("/dev/checkout/"+co.SessionID+"/complete", "")
		}
		buy("Basic", billing.PriceMonthly)
		sub := last("subscriptions")
		c.Add(31 * 24 * time.Hour)
		if err := s.AdvanceTo(ctx, c.Now()); err != nil {
			tb.Fatal(err)
		}
		c.Add(24 * time.Hour)
		act("/dev/subscriptions/"+sub+"/fail", "")
		c.Add(24 * time.Hour)
		act("/dev/subscriptions/"+sub+"/update", `{"plan":"Power"}`)
		c.Add(24 * time.Hour)
		act("/dev/subscriptions/"+sub+"/cancel", `{"atPeriodEnd":true}`)
		c.Add(24 * time.Hour)
		act("/dev/subscriptions/"+sub+"/cancel", `{"atPeriodEnd":false}`)
		buy("Basic", billing.PriceInstant)
		act("/dev/charges/"+last("charges")+"/refund", `{"amount":100}`)
		buy("Power", billing.PriceInstant)
		act("/dev/charges/"+last("charges")+"/dispute", "")
		if err := s.Drain(ctx); err != nil {
			tb.Fatal(err)
		}
		for _, id := range s.EventIDs() {
			p, _ := s.Payload(id)
			standinPayloads = append(standinPayloads, p)
		}
	})
	types := map[string]bool{}
	for _, p := range standinPayloads {
		var ev struct{ Type string }
		_ = json.Unmarshal(p, &ev)
		types[ev.Type] = true
	}
	for _, typ := range []string{payments.EventCheckoutCompleted, payments.EventInvoicePaid, payments.EventInvoiceFailed,
		payments.EventSubscriptionUpdated, payments.EventSubscriptionDeleted, payments.EventChargeRefunded, payments.EventDisputeCreated} {
		if !types[typ] {
			tb.Fatalf("the stand-in sent no %s event: the seeds do not cover every type", typ)
		}
	}
	return standinPayloads
}

// changeFits reports whether a decoded event's change is of the kind its
// type calls for (nil is always allowed: not every object is ours).
func changeFits(typ string, change any) bool {
	if change == nil {
		return true
	}
	var ok bool
	switch typ {
	case payments.EventCheckoutCompleted, payments.EventCheckoutAsyncSucceeded:
		_, ok = change.(billing.CheckoutCompleted)
	case payments.EventCheckoutAsyncFailed:
		_, ok = change.(billing.CheckoutPaymentFailed)
	case payments.EventInvoicePaid:
		_, ok = change.(billing.InvoicePaid)
	case payments.EventInvoiceFailed:
		_, ok = change.(billing.InvoiceFailed)
	case payments.EventSubscriptionUpdated, payments.EventSubscriptionDeleted:
		_, ok = change.(billing.SubscriptionChanged)
	case payments.EventChargeRefunded, payments.EventDisputeCreated:
		_, ok = change.(billing.PaymentReversed)
	}
	return ok
}

// checkVerified holds a verified event to what the webhook handler relies
// on: an id, the payload's type, a change of that type's kind, and a
// deletion always read as canceled.
func checkVerified(t *testing.T, payload []byte, ev billing.Event) {
	t.Helper()
	var head struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(payload, &head); err != nil {
		t.Fatalf("verified a body that is not a JSON object: %v", err)
	}
	if ev.ID == "" || ev.ID != head.ID || ev.Type != head.Type {
		t.Fatalf("verified event id %q type %q from a body with id %q type %q", ev.ID, ev.Type, head.ID, head.Type)
	}
	if !changeFits(ev.Type, ev.Change) {
		t.Fatalf("a %s event decoded into %T", ev.Type, ev.Change)
	}
	if sc, ok := ev.Change.(billing.SubscriptionChanged); ok && ev.Type == payments.EventSubscriptionDeleted && sc.Status != billing.StatusCanceled {
		t.Fatalf("a deletion decoded with status %q", sc.Status)
	}
}

// FuzzVerifyEvent: any body with any Stripe-Signature header never panics,
// and whatever is not signed with the endpoint's secret is refused with
// ErrInvalidSignature.
func FuzzVerifyEvent(f *testing.F) {
	now := time.Now()
	for _, p := range standinEvents(f) {
		f.Add(p, sign(string(p), "whsec_other", now))
		f.Add(p, "t=1700000000,v1="+strings.Repeat("ab", 32))
	}
	f.Add([]byte(invoicePaid), "")
	f.Add([]byte(invoicePaid), "t=,v1=")
	f.Add([]byte(invoicePaid), "t=99999999999999999999,v1=00,v0=11")
	f.Add([]byte(invoicePaid), "v1="+strings.Repeat("0", 64)+",t="+strings.Repeat("9", 30))
	f.Add([]byte(`{}`), ",,,=,t")
	f.Add([]byte{0xff, 0xfe, 0x00}, "t=1,v1=zz")
	w := payments.NewWebhook(secret)
	f.Fuzz(func(t *testing.T, payload []byte, header string) {
		ev, err := w.VerifyEvent(payload, header)
		if err == nil {
			// Only a forged HMAC could get here.
			t.Fatalf("an unsigned body verified: %+v", ev)
		}
		if !errors.Is(err, billing.ErrInvalidSignature) {
			t.Fatalf("err %v does not wrap ErrInvalidSignature", err)
		}
	})
}

// FuzzSignedEventBody: a body signed with the right secret, whatever it
// holds, never panics; it verifies into a well-formed event or is refused
// with ErrInvalidSignature.
func FuzzSignedEventBody(f *testing.F) {
	for _, p := range standinEvents(f) {
		f.Add(p)
		f.Add(p[:len(p)/2])
	}
	f.Add([]byte(invoicePaid))
	f.Add([]byte(`{"id":"evt_1","object":"event","api_version":"2023-10-16","type":"invoice.paid","data":null}`))
	f.Add([]byte(`{"id":"","api_version":"2023-10-16","type":"charge.refunded","data":{"object":{}}}`))
	f.Add([]byte(`{"id":"evt_1","api_version":"2023-10-16","type":"charge.dispute.created","data":{"object":{"charge":{"id":"ch_1"},"amount":-5}}}`))
	f.Add([]byte(`{"id":"evt_1","api_version":"2023-10-16","type":"checkout.session.completed","data":{"object":{"mode":"subscription","subscription":7}}}`))
	// Null list elements: Decode once dereferenced them (found by
	// FuzzSignedEventFields; testdata/fuzz holds its input).
	f.Add([]byte(`{"id":"evt_1","api_version":"2023-10-16","type":"invoice.paid","data":{"object":{"subscription":"sub_1","lines":{"data":[null]}}}}`))
	f.Add([]byte(`{"id":"evt_1","api_version":"2023-10-16","type":"customer.subscription.updated","data":{"object":{"id":"sub_1","items":{"data":[null]}}}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	w := payments.NewWebhook(secret)
	f.Fuzz(func(t *testing.T, payload []byte) {
		ev, err := w.VerifyEvent(payload, sign(string(payload), secret, time.Now()))
		if err != nil {
			if !errors.Is(err, billing.ErrInvalidSignature) {
				t.Fatalf("err %v does not wrap ErrInvalidSignature", err)
			}
			return
		}
		checkVerified(t, payload, ev)
	})
}

// FuzzSignedEventFields: a validly signed event of each type the webhook
// applies, one field of its body replaced by another JSON value (a string,
// number, null, object, array, or a value the fuzzer makes), decodes into a
// well-formed event or is refused with ErrInvalidSignature; it never panics.
func FuzzSignedEventFields(f *testing.F) {
	seeds := standinEvents(f)
	for i := range seeds {
		for _, v := range []string{`null`, `""`, `"x"`, `0`, `-1`, `1e400`, `9223372036854775808`, `true`, `{}`, `[]`,
			`{"id":"cus_x"}`, `[{"id":"x"}]`, `"\u0000"`} {
			f.Add(uint8(i), uint16(7*i+len(v)), v)
		}
	}
	w := payments.NewWebhook(secret)
	f.Fuzz(func(t *testing.T, which uint8, field uint16, value string) {
		base := seeds[int(which)%len(seeds)]
		var doc any
		if err := json.Unmarshal(base, &doc); err != nil {
			t.Fatal(err)
		}
		var repl any
		if err := json.Unmarshal([]byte(value), &repl); err != nil {
			repl = value // not JSON: put it in as a string
		}
		paths := leaves(doc, nil, nil)
		path := paths[int(field)%len(paths)]
		doc = replace(doc, path, repl)
		payload, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err) // values decoded from JSON always encode
		}
		ev, err := w.VerifyEvent(payload, sign(string(payload), secret, time.Now()))
		if err != nil {
			if !errors.Is(err, billing.ErrInvalidSignature) {
				t.Fatalf("err %v does not wrap ErrInvalidSignature", err)
			}
			return
		}
		checkVerified(t, payload, ev)
	})
}

// leaves lists the paths of every value in doc (objects by key, arrays by
// index), containers included, in a stable order.
func leaves(doc any, prefix []any, out [][]any) [][]any {
	out = append(out, append([]any(nil), prefix...))
	switch v := doc.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = leaves(v[k], append(prefix, k), out)
		}
	case []any:
		for i, x := range v {
			out = leaves(x, append(prefix, i), out)
		}
	}
	return out
}

func replace(doc any, path []any, v any) any {
	if len(path) == 0 {
		return v
	}
	switch d := doc.(type) {
	case map[string]any:
		k := path[0].(string)
		d[k] = replace(d[k], path[1:], v)
	case []any:
		i := path[0].(int)
		d[i] = replace(d[i], path[1:], v)
	}
	return doc
}
