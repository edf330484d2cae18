package paymeterclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// A call that meets a 503 is retried with the same Idempotency-Key and the
// operator secret; errors come back in the contract's code.
func TestRetriesWithOneIdempotencyKey(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		n := len(keys)
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.WriteHeader(401)
			return
		}
		if n < 3 {
			w.WriteHeader(503)
			_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"try again"}}`))
			return
		}
		var in map[string]any
		_ = json.NewDecoder(r.Body).Decode(&in)
		if in["key"] == "pmk_none" {
			w.WriteHeader(402)
			_, _ = w.Write([]byte(`{"error":{"code":"insufficient_credits","message":"no credits left"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"allowed":true,"account":"u1","keyId":"key_1","cost":2,"credits":8}`))
	}))
	defer srv.Close()
	c := New(srv.URL, "s3cret")
	c.Backoff = time.Millisecond
	v, err := c.Verify(context.Background(), "pmk_x", 2, "/v1/search")
	if err != nil || !v.Allowed || v.Credits != 8 {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
	if len(keys) != 3 || keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] {
		t.Errorf("Idempotency-Keys of the attempts: %q", keys)
	}
	_, err = c.Verify(context.Background(), "pmk_none", 0, "")
	if Code(err) != "insufficient_credits" {
		t.Errorf("Verify with no credits: %v", err)
	}
	if keys[3] == keys[0] {
		t.Error("a new call reused the last call's Idempotency-Key")
	}
}
