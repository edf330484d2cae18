package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/paymeter/paymeter/billing"
)

// SignatureHeader carries an operator event's signature:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with
// OPERATOR_WEBHOOK_SECRET>", as Stripe signs its events.
const SignatureHeader = "Paymeter-Signature"

// WebhookWindow is how long a notice's delivery is retried before it is
// given up (marked failed): three days, as Stripe retries its events.
const WebhookWindow = 72 * time.Hour

// Event is the operator's webhook event of a notice. Its ID is the same on
// every retry, for receivers to de-duplicate.
type Event struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	Created int64     `json:"created"`
	Data    EventData `json:"data"`
}

// EventData is what the event is about: the account and the notice's data.
type EventData struct {
	Account string `json:"account"`
	Email   string `json:"email,omitempty"`
	billing.NoticeData
}

// EventID is the stable id of the event of notice id of account uid.
func EventID(uid, id string) string {
	sum := sha256.Sum256([]byte(uid + "|" + id))
	return "evt_" + hex.EncodeToString(sum[:])[:32]
}

// eventOf returns the body of e's event.
func eventOf(e billing.OutboxEntry, email string) ([]byte, error) {
	return json.Marshal(Event{ID: EventID(e.UID, e.ID), Type: e.Type, Created: e.Created.Unix(),
		Data: EventData{Account: e.UID, Email: email, NoticeData: e.Data}})
}

// Sign returns the SignatureHeader value of body signed at t with secret.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Webhook posts signed events to the operator's URL.
type Webhook struct {
	URL    string
	Secret string
	Client *http.Client // default: a 10-second timeout
}

// Post sends body, signed at now; any answer but 2xx is an error. Errors
// name neither the URL (it may carry a token) nor the secret.
func (w *Webhook) Post(ctx context.Context, body []byte, now time.Time) error {
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("operator webhook: bad OPERATOR_WEBHOOK_URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Paymeter-Webhook/1")
	req.Header.Set(SignatureHeader, Sign(w.Secret, now, body))
	res, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("operator webhook: %w", err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("operator webhook: status %d", res.StatusCode)
	}
	return nil
}
