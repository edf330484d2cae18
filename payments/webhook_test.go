package payments_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/payments"
	"github.com/paymeter/paymeter/payments/stripemocktest"
)

const secret = "whsec_test"

const invoicePaid = `{"id":"evt_1","object":"event","api_version":"2023-10-16","created":1764000000,"type":"invoice.paid",
"data":{"object":{"id":"in_1","object":"invoice","customer":"cus_1","subscription":"sub_1","payment_intent":"pi_1","amount_paid":4500,
"subscription_details":{"metadata":{"uid":"u1","plan":"Basic"}},
"lines":{"object":"list","data":[
 {"id":"il_1","object":"line_item","amount":-500,"proration":true,"period":{"start":1764000000,"end":1766592000},"price":{"id":"price_b","object":"price","lookup_key":"Basic_monthly_price","metadata":{}}},
 {"id":"il_2","object":"line_item","amount":5000,"proration":true,"period":{"start":1764000000,"end":1766592000},"price":{"id":"price_p","object":"price","lookup_key":null,"metadata":{"plan":"Power"}}}
]}}}}`

func sign(payload string, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: []byte(payload), Secret: secret, Timestamp: at}).Header
}

func TestVerifyEventDecodesInvoice(t *testing.T) {
	w := payments.NewWebhook(secret)
	ev, err := w.VerifyEvent([]byte(invoicePaid), sign(invoicePaid, secret, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	paid, ok := ev.Change.(billing.InvoicePaid)
	if !ok {
		t.Fatalf("change %T", ev.Change)
	}
	want := billing.InvoicePaid{InvoiceID: "in_1", SubscriptionID: "sub_1", Plan: "Power", Payment: "pi_1", Amount: 4500,
		PeriodStart: time.Unix(1764000000, 0).UTC(), PeriodEnd: time.Unix(1766592000, 0).UTC(), Created: time.Unix(1764000000, 0).UTC()}
	if paid != want || ev.CustomerID != "cus_1" || ev.UID != "u1" || ev.ID != "evt_1" {
		t.Errorf("got %+v %+v\nwant %+v", ev, paid, want)
	}
}

func TestVerifyEventRefusesUntrustedDeliveries(t *testing.T) {
	w := payments.NewWebhook(secret)
	now := time.Now()
	other := `{"id":"evt_2","object":"event","api_version":"2020-08-27","created":1,"type":"invoice.paid","data":{"object":{}}}`
	for name, c := range map[string]struct{ payload, header string }{
		"bad signature":     {invoicePaid, "t=" + time.Now().Format("20060102") + ",v1=00ff"},
		"no signature":      {invoicePaid, ""},
		"stale timestamp":   {invoicePaid, sign(invoicePaid, secret, now.Add(-301*time.Second))},
		"wrong secret":      {invoicePaid, sign(invoicePaid, "whsec_other", now)},
		"truncated body":    {invoicePaid[:len(invoicePaid)-10], sign(invoicePaid, secret, now)},
		"other api version": {other, sign(other, secret, now)},
	} {
		if _, err := w.VerifyEvent([]byte(c.payload), c.header); !errors.Is(err, billing.ErrInvalidSignature) {
			t.Errorf("%s: err %v, want ErrInvalidSignature", name, err)
		}
	}
	if _, err := payments.NewWebhook("").VerifyEvent([]byte(invoicePaid), sign(invoicePaid, "", now)); !errors.Is(err, billing.ErrInvalidSignature) {
		t.Errorf("no secret configured: err %v", err)
	}
}

func TestVerifyEventIgnoresOtherTypes(t *testing.T) {
	p := `{"id":"evt_3","object":"event","api_version":"2023-10-16","created":1764000000,"type":"customer.created","data":{"object":{"id":"cus_1","object":"customer"}}}`
	ev, err := payments.NewWebhook(secret).VerifyEvent([]byte(p), sign(p, secret, time.Now()))
	if err != nil || ev.Change != nil || ev.Type != "customer.created" {
		t.Errorf("got %+v, %v", ev, err)
	}
}

// stripeMockSession is stripe-mock's fixture of a Checkout Session (Stripe's
// own example of the 2023-10-16 shape), as a JSON object.
func stripeMockSession(t *testing.T) map[string]any {
	t.Helper()
	req, err := http.NewRequest("GET", stripemocktest.Start(t)+"/v1/checkout/sessions/cs_test_async", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("sk_test_123", "")
	req.Header.Set("Stripe-Version", "2023-10-16")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var cs map[string]any
	if err := json.NewDecoder(res.Body).Decode(&cs); err != nil || res.StatusCode != 200 {
		t.Fatalf("stripe-mock session: %d %v", res.StatusCode, err)
	}
	return cs
}

// TestVerifyEventDecodesDelayedPayments: a session of stripe-mock's fixture
// shape, completed unpaid (a bank debit), then its delayed payment
// succeeding or failing, decodes to: no grant yet, a paid checkout, a
// failed one.
func TestVerifyEventDecodesDelayedPayments(t *testing.T) {
	cs := stripeMockSession(t)
	cs["customer"], cs["status"], cs["mode"] = "cus_1", "complete", "payment"
	cs["metadata"] = map[string]string{"uid": "u1", "plan": "Basic", "kind": "instant"}
	pi, _ := cs["payment_intent"].(string)
	w := payments.NewWebhook(secret)
	decode := func(typ, paymentStatus string) billing.Event {
		t.Helper()
		cs["payment_status"] = paymentStatus
		body, _ := json.Marshal(map[string]any{"id": "evt_" + typ, "object": "event", "api_version": "2023-10-16",
			"created": 1764000000, "type": typ, "data": map[string]any{"object": cs}})
		ev, err := w.VerifyEvent(body, sign(string(body), secret, time.Now()))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if ev.CustomerID != "cus_1" || ev.UID != "u1" {
			t.Errorf("%s: customer %q uid %q", typ, ev.CustomerID, ev.UID)
		}
		return ev
	}
	at := time.Unix(1764000000, 0).UTC()
	want := billing.CheckoutCompleted{SessionID: "cs_test_async", Kind: billing.PriceInstant, Plan: "Basic", Payment: pi, Created: at}
	if got := decode(payments.EventCheckoutCompleted, "unpaid").Change; got != want {
		t.Errorf("completed unpaid:\n got %+v\nwant %+v", got, want)
	}
	want.Paid = true
	if got := decode(payments.EventCheckoutAsyncSucceeded, "paid").Change; got != want {
		t.Errorf("async payment succeeded:\n got %+v\nwant %+v", got, want)
	}
	failed := billing.CheckoutPaymentFailed{SessionID: "cs_test_async", Kind: billing.PriceInstant, Plan: "Basic", Created: at}
	if got := decode(payments.EventCheckoutAsyncFailed, "unpaid").Change; got != failed {
		t.Errorf("async payment failed:\n got %+v\nwant %+v", got, failed)
	}
}
