package paymeterclient_test

import (
	"errors"
	"testing"
	"time"

	"github.com/paymeter/paymeter/notify"
	"github.com/paymeter/paymeter/paymeterclient"
)

func TestVerifySignature(t *testing.T) {
	const secret = "whsec_operator_test"
	now := time.Unix(1_790_000_000, 0)
	body := []byte(`{"id":"evt_1","type":"credits.low","created":1790000000,"data":{"account":"u1","balance":9}}`)
	good := notify.Sign(secret, now, body)
	cases := []struct {
		name   string
		body   []byte
		header string
		secret string
		at     time.Time
		want   error
	}{
		{"signed by Paymeter", body, good, secret, now, nil},
		{"a minute later", body, good, secret, now.Add(time.Minute), nil},
		{"tampered body", []byte(`{"id":"evt_1","type":"credits.low","created":1790000000,"data":{"account":"u2","balance":9}}`), good, secret, now, paymeterclient.ErrBadSignature},
		{"wrong secret", body, good, "whsec_other", now, paymeterclient.ErrBadSignature},
		{"stale timestamp", body, good, secret, now.Add(6 * time.Minute), paymeterclient.ErrStale},
		{"from the future", body, good, secret, now.Add(-6 * time.Minute), paymeterclient.ErrStale},
		{"timestamp swapped", body, "t=1790000300," + good[len("t=1790000000,"):], secret, now, paymeterclient.ErrBadSignature},
		{"no header", body, "", secret, now, paymeterclient.ErrNoSignature},
		{"no v1", body, "t=1790000000", secret, now, paymeterclient.ErrNoSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := paymeterclient.VerifySignature(c.body, c.header, c.secret, 0, c.at)
			if !errors.Is(err, c.want) {
				t.Fatalf("VerifySignature = %v, want %v", err, c.want)
			}
		})
	}
}
