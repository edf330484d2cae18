package devstripe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// Events and their delivery: one worker sends them to the webhook in the
// order they were made, retrying each until it is accepted.

// sentEvent is an event the stand-in sent, and how its delivery went.
type sentEvent struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Created    int64  `json:"created"`
	Object     string `json:"object"`
	Deliveries int    `json:"deliveries"` // accepted deliveries
	Attempts   int    `json:"attempts"`
	LastStatus int    `json:"lastStatus"`
	LastError  string `json:"lastError,omitempty"`
	payload    []byte
}

type delivery struct {
	ev   *sentEvent
	done chan struct{}
}

// emit records the event of obj as Stripe would send it now: the object as
// it is at this moment. Call with s.mu held; enqueue the delivery after.
//
// Event times only move forward, a second at a time at least, as Stripe's
// do between one action and the next: two events of one second could not be
// told apart by time.
func (s *Stripe) emit(typ stripe.EventType, objectID string, obj any, at int64) *delivery {
	at = max(at, s.lastEvent+1)
	s.lastEvent = at
	ev := event{ID: s.newID("evt"), Object: "event", APIVersion: stripe.APIVersion, Created: at, Data: eventData{Object: obj},
		PendingWebhooks: 1, Type: string(typ)}
	payload, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("devstripe: encode %s: %v", typ, err)) // our own types always encode
	}
	se := &sentEvent{ID: ev.ID, Type: ev.Type, Created: at, Object: objectID, payload: payload}
	s.events[se.ID] = se
	s.remember("events", se.ID)
	return &delivery{ev: se, done: make(chan struct{})}
}

func (s *Stripe) enqueue(ds ...*delivery) {
	if len(ds) == 0 {
		return
	}
	s.qmu.Lock()
	s.queue = append(s.queue, ds...)
	s.qmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Stripe) next() (*delivery, bool) {
	for {
		s.qmu.Lock()
		if len(s.queue) > 0 {
			d := s.queue[0]
			s.queue = s.queue[1:]
			s.busy = d
			s.qmu.Unlock()
			return d, true
		}
		s.qmu.Unlock()
		select {
		case <-s.wake:
		case <-s.stop:
			return nil, false
		}
	}
}

// worker delivers events one at a time, in the order they were made,
// retrying each with backoff until the webhook accepts it.
func (s *Stripe) worker() {
	defer close(s.done)
	for {
		d, ok := s.next()
		if !ok {
			return
		}
		backoff := 50 * time.Millisecond
		for !s.send(d.ev) {
			select {
			case <-s.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
		s.qmu.Lock()
		s.busy = nil
		s.qmu.Unlock()
		close(d.done)
	}
}

// send delivers one event, signed now with wall-clock time (the webhook
// checks the signature's age against real time, whatever the dev clock
// says). It reports whether the webhook answered 2xx.
func (s *Stripe) send(ev *sentEvent) bool {
	s.mu.Lock()
	payload := ev.payload
	ev.Attempts++
	s.mu.Unlock()
	signed := stripeSignature(payload, s.cfg.WebhookSecret, time.Now())
	status, err := s.post(payload, signed)
	s.mu.Lock()
	defer s.mu.Unlock()
	ev.LastStatus, ev.LastError = status, ""
	if err != nil {
		ev.LastError = err.Error()
	}
	ok := err == nil && status >= 200 && status < 300
	if ok {
		ev.Deliveries++
	} else {
		s.cfg.Log.Warn("devstripe: webhook refused an event; retrying", "event", ev.ID, "type", ev.Type, "status", status, "err", err)
	}
	return ok
}

func (s *Stripe) post(payload []byte, signature string) (int, error) {
	if s.cfg.Webhook != nil {
		req, err := http.NewRequest(http.MethodPost, "/api/stripe/webhook", strings.NewReader(string(payload)))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("Stripe-Signature", signature)
		rec := &statusWriter{header: http.Header{}}
		s.cfg.Webhook.ServeHTTP(rec, req)
		return rec.code(), nil
	}
	if s.cfg.WebhookURL == "" {
		return 0, errors.New("no webhook to deliver to")
	}
	req, err := http.NewRequest(http.MethodPost, s.cfg.WebhookURL, strings.NewReader(string(payload)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", signature)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// statusWriter is a ResponseWriter that keeps only the status.
type statusWriter struct {
	header http.Header
	status int
}

func (w *statusWriter) Header() http.Header         { return w.header }
func (w *statusWriter) Write(b []byte) (int, error) { w.WriteHeader(http.StatusOK); return len(b), nil }
func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// wait returns when every delivery is done, or with ctx's error.
func wait(ctx context.Context, ds []*delivery) error {
	for _, d := range ds {
		select {
		case <-d.done:
		case <-ctx.Done():
			return fmt.Errorf("deliver %s: %w", d.ev.ID, ctx.Err())
		}
	}
	return nil
}

// Drain returns once every event sent so far has been delivered, or with
// ctx's error.
func (s *Stripe) Drain(ctx context.Context) error {
	s.qmu.Lock()
	pending := append([]*delivery(nil), s.queue...)
	s.qmu.Unlock()
	if err := wait(ctx, pending); err != nil {
		return err
	}
	// The one being delivered, if any, left the queue already: wait for the
	// worker to come back for more.
	for {
		s.qmu.Lock()
		idle := len(s.queue) == 0 && s.busy == nil
		s.qmu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// resend delivers an event again, as the Stripe dashboard can.
func (s *Stripe) resend(id string) (*delivery, error) {
	ev, ok := s.events[id]
	if !ok {
		return nil, errNotFound("event", id)
	}
	return &delivery{ev: ev, done: make(chan struct{})}, nil
}

// Payload returns the body the stand-in sends for an event, for tests that
// deliver it themselves.
func (s *Stripe) Payload(eventID string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev, ok := s.events[eventID]
	if !ok {
		return nil, false
	}
	return ev.payload, true
}

// EventIDs returns the ids of the events sent so far, oldest first.
func (s *Stripe) EventIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order["events"]...)
}
