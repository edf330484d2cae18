package functions_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/functions"
	"github.com/paymeter/paymeter/internal/emulator"
	"github.com/paymeter/paymeter/lease"
	"github.com/paymeter/paymeter/store"
)

// heldJournal is the Firestore store whose journal writes (the records of
// the calls' use) the test holds until it releases them, or fails.
type heldJournal struct {
	*store.Store
	writing chan struct{} // a write is waiting for release

	mu      sync.Mutex
	release chan struct{} // nil: writes go through
	fail    int           // the next writes to fail, with nothing written
}

// hold makes the next writes wait until the returned func is called.
func (j *heldJournal) hold() (release func()) {
	j.mu.Lock()
	defer j.mu.Unlock()
	ch := make(chan struct{})
	j.release = ch
	return sync.OnceFunc(func() {
		j.mu.Lock()
		j.release = nil
		j.mu.Unlock()
		close(ch)
	})
}

func (j *heldJournal) failNext(n int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.fail = n
}

func (j *heldJournal) WriteJournal(ctx context.Context, w store.JournalWrite) (time.Time, error) {
	j.mu.Lock()
	release := j.release
	fail := j.fail > 0
	if fail {
		j.fail--
	}
	j.mu.Unlock()
	if release != nil {
		select {
		case j.writing <- struct{}{}:
		default:
		}
		<-release
	}
	if fail {
		return time.Time{}, fmt.Errorf("write journal: %w", context.DeadlineExceeded)
	}
	return j.Store.WriteJournal(ctx, w)
}

// In lease mode the upstream's call overlaps the record of its use, but
// nothing of the upstream's answer, an early hint included, reaches the
// consumer before that record has landed; a call whose use could not be
// recorded is answered 503 unavailable, whatever the upstream answered, and
// charged nothing, nor refunded.
func TestUpstreamAnswerWaitsForTheRecord(t *testing.T) {
	emulator.Firestore(t)
	ctx := context.Background()
	client, err := firestore.NewClient(ctx, fmt.Sprintf("demo-overlap-%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })

	answered := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { answered <- struct{}{} }()
		switch r.URL.Path {
		case "/fail":
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case "/hinted":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"words":3}`))
		w.(http.Flusher).Flush()
	}))
	t.Cleanup(upstream.Close)
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"METER_UPSTREAMS": "/v1/=" + upstream.URL, "METER_MODE": "lease"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	cat := billing.DefaultCatalog()
	st := store.New(client, cat.Free())
	now := time.Now()
	if _, _, err := st.Provision(ctx, billing.Identity{UID: "overlap"}, now); err != nil {
		t.Fatal(err)
	}
	secret, key, hash, err := billing.NewAPIKey(rand.Reader, "overlap", "overlap", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateKey(ctx, hash, key); err != nil {
		t.Fatal(err)
	}
	journal := &heldJournal{Store: st, writing: make(chan struct{}, 1)}
	leases := lease.New(journal, realNow{}, lease.Config{Linger: -1, NoWatch: true}, nil)
	srv := &functions.Server{Config: cfg, Catalog: cat, Accounts: st, History: st, Keys: st, Meter: leases, Events: st,
		Clock: realNow{}, Random: rand.Reader, Metering: st, Leases: leases, Log: slog.New(slog.DiscardHandler)}
	mux := http.NewServeMux()
	srv.Mount(mux, srv.Functions("Meter"))
	proxy := httptest.NewServer(mux)
	t.Cleanup(proxy.Close)

	type result struct {
		status int
		header http.Header
		body   []byte
		err    error
	}
	var hinted sync.Map // path: when its early hint reached the consumer
	call := func(path string) <-chan result {
		out := make(chan result, 1)
		go func() {
			trace := &httptrace.ClientTrace{Got1xxResponse: func(int, textproto.MIMEHeader) error {
				hinted.Store(path, time.Now())
				return nil
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "GET", proxy.URL+"/v1"+path, nil)
			req.Header.Set("Authorization", "Bearer "+secret)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				out <- result{err: err}
				return
			}
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			out <- result{status: res.StatusCode, header: res.Header, body: body, err: err}
		}()
		return out
	}
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: timed out", what)
		}
	}
	get := func(out <-chan result) result {
		t.Helper()
		select {
		case r := <-out:
			if r.err != nil {
				t.Fatal(r.err)
			}
			return r
		case <-time.After(20 * time.Second):
			t.Fatal("no answer")
		}
		return result{}
	}

	// The upstream answers while the record is held: the consumer gets
	// nothing, not even an early hint, until it lands.
	for _, path := range []string{"/stats", "/hinted"} {
		release := journal.hold()
		t.Cleanup(release)
		out := call(path)
		wait("the record's write", journal.writing)
		wait("the upstream's answer", answered)
		select {
		case r := <-out:
			t.Fatalf("%s answered %d %s while the record was held", path, r.status, r.body)
		case <-time.After(300 * time.Millisecond):
		}
		if _, ok := hinted.Load(path); ok {
			t.Fatalf("%s: the upstream's early hint reached the consumer while the record was held", path)
		}
		release()
		r := get(out)
		if r.status != 200 || string(r.body) != `{"words":3}` || r.header.Get("X-Credits-Cost") != "1" {
			t.Fatalf("%s after the record landed: %d %s %v", path, r.status, r.body, r.header)
		}
	}

	// The record fails: 503 unavailable, whatever the upstream answered
	// (its 5xx would otherwise be a 502 and a refund), and nothing charged.
	for _, path := range []string{"/stats", "/fail"} {
		journal.failNext(3) // the flush's write and its two retries
		r := get(call(path))
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal(r.body, &e)
		if r.status != http.StatusServiceUnavailable || e.Error.Code != billing.CodeUnavailable {
			t.Errorf("%s with its record failed = %d %s, want 503 %s", path, r.status, r.body, billing.CodeUnavailable)
		}
		wait("the upstream's answer", answered) // it was forwarded, and its answer discarded
	}

	closeCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := leases.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
	a, err := st.Account(ctx, "overlap")
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Balance(time.Now()); got != 48 {
		t.Errorf("balance %d after two calls recorded and two not, want 48", got)
	}
}
