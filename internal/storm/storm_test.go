package storm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/devstripe"
	"github.com/paymeter/paymeter/functions"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/emulator"
	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/payments"
	"github.com/paymeter/paymeter/store"
)

const whsec = "whsec_storm_test"

// tStart is the stand-in's clock when the storm's lifecycles begin.
var tStart = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func envInt(k string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil && n > 0 {
		return n
	}
	return def
}

// TestWebhookStorm: about a thousand events of subscriptions, renewals, plan
// changes, failed payments, top-ups, refunds, disputes and cancellations
// across many accounts reach a server process: each at least once from the
// stand-in (in order, retried until accepted, as Stripe does), one to three
// more times from six concurrent senders in shuffled order, and some three
// times at once, while the process is killed with SIGKILL and restarted
// twice. Every account must end as one in-order delivery of the same events
// leaves it on a fresh store: plan, credits, subscription, live grants and
// ledger (see sameLedger for the one allowance).
//
// The Firestore emulator locks pessimistically: two transactions on one
// account that overlap wait for its 30-second lock timeout, and so do those
// behind a transaction whose process was killed. So the senders and the
// stand-in take turns per account (lanes): deliveries run concurrently
// across accounts, and concurrently on one account only in the bursts.
func TestWebhookStorm(t *testing.T) {
	emulator.Firestore(t)
	started := time.Now()
	wantEvents := envInt("STORM_EVENTS", 1000)
	nAccounts := envInt("STORM_ACCOUNTS", 40)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	stormProject, refProject := "demo-storm-"+suffix, "demo-storm-ref-"+suffix
	// The servers' clock: after every event, before any subscription
	// period ends (a month from its start), as when events are delivered
	// within Stripe's retry window.
	now := tStart.Add(21 * 24 * time.Hour)
	cat := billing.DefaultCatalog()

	stormStore, stormClient := newStore(t, stormProject)
	refStore, refClient := newStore(t, refProject)
	t.Cleanup(func() { clearProject(stormProject); clearProject(refProject) })

	port := freePort(t)
	base := "http://127.0.0.1:" + port
	client := &http.Client{Timeout: 60 * time.Second}
	lanes := newLanes()
	owners := &sync.Map{} // event id → uid
	ownerOf := func(payload []byte) string {
		var ev struct{ ID string }
		_ = json.Unmarshal(payload, &ev)
		for range 2000 {
			if uid, ok := owners.Load(ev.ID); ok {
				return uid.(string)
			}
			time.Sleep(time.Millisecond) // made a moment ago; its owner is being recorded
		}
		return ""
	}
	// The stand-in delivers each event over HTTP to the server process, in
	// its lane; a refused or failed delivery is retried with backoff. It
	// holds its first delivery until the storm begins, so that the storm's
	// shuffled deliveries race it from the first event.
	var standDeliveries atomic.Int64
	open := make(chan struct{})
	forward := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-open:
		case <-ctx.Done():
		}
		body, _ := io.ReadAll(r.Body)
		uid := ownerOf(body)
		lanes.acquire(uid)
		defer lanes.release(uid)
		standDeliveries.Add(1)
		status, err := post(ctx, client, base, body, r.Header.Get("Stripe-Signature"))
		if err != nil {
			status = http.StatusBadGateway
		}
		w.WriteHeader(status)
	})
	standClock := clock.NewFixed(tStart)
	var standLog lockedBuffer
	stand := devstripe.New(devstripe.Config{PublicURL: "http://storm.test", WebhookSecret: whsec, Webhook: forward,
		Catalog: cat, Clock: standClock, Wait: time.Millisecond,
		Random: mrand.NewChaCha8([32]byte{'s', 't', 'o', 'r', 'm'}), Log: slog.New(slog.NewTextHandler(&standLog, nil))})
	defer stand.Close()
	defer cancel() // first: a delivery held or waiting gives up, so that Close returns
	rpc := httptest.NewServer(rpcHandler(stand))
	defer rpc.Close()

	// Accounts, the same in both stores, each linked to its stand-in
	// customer.
	uids := make([]string, nAccounts)
	for i := range uids {
		uid := fmt.Sprintf("storm-%02d", i)
		uids[i] = uid
		cus, err := stand.EnsureCustomer(ctx, uid, uid+"@example.com")
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range []*store.Store{stormStore, refStore} {
			if _, _, err := st.Provision(ctx, billing.Identity{UID: uid, Email: uid + "@example.com"}, now); err != nil {
				t.Fatal(err)
			}
			if _, err := st.UpdateAccount(ctx, uid, func(a *billing.Account) error { a.CustomerID = cus; return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}

	srv := &server{port: port, log: filepath.Join(t.TempDir(), "server.log"), env: []string{
		envServer + "=" + serverFlag, "PORT=" + port, "GOOGLE_CLOUD_PROJECT=" + stormProject,
		"STRIPE_WEBHOOK_SECRET=" + whsec, envNow + "=" + now.Format(time.RFC3339Nano), envStripe + "=" + rpc.URL,
		"PUBLIC_URL=http://storm.test", "LOG_FORMAT=text", "STRIPE_SECRET_KEY="}}
	if os.Getenv("FIREBASE_AUTH_EMULATOR_HOST") == "" {
		// No token is verified in the storm; the verifier only needs building.
		srv.env = append(srv.env, "FIREBASE_AUTH_EMULATOR_HOST=127.0.0.1:1")
	}
	if err := srv.start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.kill()

	// The lifecycles. The stand-in's worker starts delivering each event,
	// in order, as soon as it is made.
	gen := &generator{t: t, stand: stand, routes: stand.Routes(), clock: standClock,
		rng: mrand.New(mrand.NewPCG(2026, 11)), accounts: map[string]*acct{}, owners: owners}
	for _, uid := range uids {
		cus, _ := stand.EnsureCustomer(ctx, uid, "")
		gen.accounts[uid] = &acct{uid: uid, customer: cus}
	}
	gen.run(ctx, uids, wantEvents)
	if !standClock.Now().Before(now) {
		t.Fatalf("the lifecycles ran to %v, past the servers' clock %v", standClock.Now(), now)
	}
	ids := stand.EventIDs()
	payloads := make([][]byte, len(ids))
	owner := make([]string, len(ids))
	types := map[string]int{}
	for i, id := range ids {
		payloads[i], _ = stand.Payload(id)
		uid, _ := owners.Load(id)
		owner[i] = uid.(string)
		var ev struct{ Type string }
		_ = json.Unmarshal(payloads[i], &ev)
		types[ev.Type]++
	}
	t.Logf("%d events made in %v: %v; actions %v", len(ids), time.Since(started).Round(time.Millisecond), types, gen.actions)

	stormStart := time.Now()
	close(open)
	var refused, answered5xx, delivered atomic.Int64
	// send delivers one event until the server accepts it, as Stripe does.
	send := func(p []byte) {
		for attempt := 0; ; attempt++ {
			status, err := post(ctx, client, base, p, sign(p))
			if err == nil && status == http.StatusOK {
				delivered.Add(1)
				return
			}
			if err != nil {
				refused.Add(1)
			} else {
				answered5xx.Add(1)
				if status < 500 {
					t.Errorf("a signed event was answered %d", status)
					return
				}
			}
			if ctx.Err() != nil {
				t.Errorf("a delivery was never accepted: %v %d", err, status)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Bursts: eight of the newest events (the stand-in reaches them last),
	// of eight accounts, each sent three times at once, before anything
	// else.
	var burst sync.WaitGroup
	bursts, seen := 0, map[string]bool{}
	for i := len(ids) - 1; i >= 0 && bursts < 8; i-- {
		if seen[owner[i]] {
			continue
		}
		seen[owner[i]] = true
		bursts++
		for range 3 {
			burst.Add(1)
			go func() { defer burst.Done(); send(payloads[i]) }()
		}
	}
	burst.Wait()
	burstTime := time.Since(stormStart)

	// The storm: every event one to three more times, shuffled, from six
	// senders that take the first delivery whose account is free; the
	// server is killed and restarted at a fifth and at nine twentieths.
	rng := mrand.New(mrand.NewPCG(7, 7))
	var pending []int
	for i := range payloads {
		for range 1 + rng.IntN(3) {
			pending = append(pending, i)
		}
	}
	rng.Shuffle(len(pending), func(i, j int) { pending[i], pending[j] = pending[j], pending[i] })
	total := len(pending)
	// Close together, so that the emulator's 30-second wait on the locks of
	// transactions that a kill left open overlaps for both.
	killAt := []int{total / 5, total * 9 / 20}
	var done atomic.Int64
	kills := make(chan struct{})
	go func() {
		defer close(kills)
		for _, at := range killAt {
			for done.Load() < int64(at) {
				if ctx.Err() != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			srv.kill()
			time.Sleep(300 * time.Millisecond) // down for a moment: deliveries fail, the stand-in backs off
			if err := srv.start(ctx); err != nil {
				t.Error(err)
				cancel() // the senders give up
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i, ok := lanes.next(&pending, func(i int) string { return owner[i] })
				if !ok {
					return
				}
				send(payloads[i])
				lanes.release(owner[i])
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	<-kills
	if err := stand.Drain(ctx); err != nil {
		t.Fatalf("the stand-in did not deliver every event: %v\n%s", err, srv.tail())
	}
	stormTime := time.Since(stormStart)
	t.Logf("storm: %d bursts of 3 concurrent deliveries in %v; %d shuffled deliveries by 6 senders and %d by the stand-in "+
		"(%d events: %d duplicates in all) in %v; server killed with SIGKILL and restarted %d times; "+
		"%d deliveries refused while it was down, %d answered 5xx, then retried",
		bursts, burstTime.Round(time.Millisecond), total, standDeliveries.Load(), len(ids),
		int64(3*bursts+total)+standDeliveries.Load()-int64(len(ids)), stormTime.Round(time.Millisecond), srv.starts-1,
		refused.Load(), answered5xx.Load())
	if n := strings.Count(srv.logTail(1<<30), "Transaction lock timeout"); answered5xx.Load() > 0 {
		t.Logf("of the 5xx answers, %d were the emulator's lock timeout after 30 s", n)
	}
	if srv.starts-1 != len(killAt) {
		t.Fatalf("the server was restarted %d times, want %d", srv.starts-1, len(killAt))
	}
	if refused.Load() == 0 {
		t.Error("no delivery was refused: the kills did not happen mid-storm")
	}

	// The reference: the same events, in order, once, to a fresh store.
	refStart := time.Now()
	ref := referenceServer(t, refStore, stand, now)
	applied := 0
	for i, p := range payloads {
		res := ref.deliver(p)
		if res.status != 200 {
			t.Fatalf("reference delivery of %s: %d %s", ids[i], res.status, res.raw)
		}
		if res.applied {
			applied++
		}
	}
	t.Logf("reference: %d events in order once in %v, %d applied", len(payloads), time.Since(refStart).Round(time.Millisecond), applied)

	// Every account ends as the reference does.
	diffs, reordered := 0, 0
	var entries, clawbacks, subs, credits int64
	for _, uid := range uids {
		want, got := snapshot(t, refStore, uid, now), snapshot(t, stormStore, uid, now)
		if d := diff(got, want); d != "" {
			diffs++
			t.Errorf("account %s after the storm differs from in-order delivery:\n%s", uid, d)
		} else if !reflect.DeepEqual(got.Ledger, want.Ledger) {
			reordered++
			t.Errorf("account %s: the ledger differs from in-order delivery:\n%s", uid, ledgerDiff(got.Ledger, want.Ledger))
		}
		entries += int64(len(want.Ledger))
		for _, e := range want.entries {
			if e.Kind == billing.EntryClawback {
				clawbacks++
			}
		}
		if want.Subscription.ID != "" {
			subs++
		}
		credits += want.Credits
	}
	stormEvents, refEvents := countEvents(ctx, t, stormClient), countEvents(ctx, t, refClient)
	if stormEvents != refEvents || refEvents != applied {
		t.Errorf("event ids recorded: storm %d, reference %d, applied in order %d", stormEvents, refEvents, applied)
	}
	if clawbacks == 0 || subs == 0 {
		t.Errorf("the reference has %d clawbacks and %d subscriptions: the storm exercised too little", clawbacks, subs)
	}
	t.Logf("%d accounts compared (%d credits, %d ledger entries of which %d clawbacks, %d with a subscription): "+
		"%d differ; %d took back the same credits in other steps; total %v",
		len(uids), credits, entries, clawbacks, subs, diffs, reordered, time.Since(started).Round(time.Millisecond))
	if t.Failed() {
		t.Logf("server log (tail):\n%s", srv.tail())
	}
}

// lanes lets one delivery at a time run per account.
type lanes struct {
	mu   sync.Mutex
	cond *sync.Cond
	busy map[string]bool
}

func newLanes() *lanes {
	l := &lanes{busy: map[string]bool{}}
	l.cond = sync.NewCond(&l.mu)
	return l
}

func (l *lanes) acquire(uid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.busy[uid] {
		l.cond.Wait()
	}
	l.busy[uid] = true
}

func (l *lanes) release(uid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.busy, uid)
	l.cond.Broadcast()
}

// next takes from pending the first item whose account is free, and takes
// that account's lane; it waits while every account with work is busy, and
// reports false once pending is empty.
func (l *lanes) next(pending *[]int, uidOf func(int) string) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if len(*pending) == 0 {
			return 0, false
		}
		for k, i := range *pending {
			if uid := uidOf(i); !l.busy[uid] {
				l.busy[uid] = true
				*pending = append((*pending)[:k], (*pending)[k+1:]...)
				return i, true
			}
		}
		l.cond.Wait()
	}
}

// ---- the server process ----

type server struct {
	port   string
	log    string
	env    []string
	mu     sync.Mutex
	cmd    *exec.Cmd
	starts int
}

// start starts the process and returns once it answers.
func (s *server) start(ctx context.Context) error {
	out, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	fmt.Fprintf(out, "==== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	s.mu.Lock()
	s.cmd = cmd
	s.starts++
	s.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get("http://127.0.0.1:" + s.port + "/api/plans")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the server did not start: %v\n%s", err, s.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends the process with SIGKILL: no shutdown, requests cut mid-way.
func (s *server) kill() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
}

func (s *server) tail() string { return s.logTail(6000) }

func (s *server) logTail(n int) string {
	b, _ := os.ReadFile(s.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// post delivers one event with a Stripe-Signature header.
func post(ctx context.Context, c *http.Client, base string, payload []byte, signature string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/stripe/webhook", bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", signature)
	res, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, nil
}

func sign(payload []byte) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: whsec, Timestamp: time.Now()}).Header
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// ---- the reference ----

type refServer struct {
	t   *testing.T
	mux *http.ServeMux
}

type refAnswer struct {
	status  int
	raw     string
	applied bool
}

// referenceServer is the API in process on st, with the stand-in itself as
// its payment provider and the same clock as the server process.
func referenceServer(t *testing.T, st *store.Store, pay billing.Payments, now time.Time) *refServer {
	t.Helper()
	cfg, err := config.Load(func(k string) string { return map[string]string{"PUBLIC_URL": "http://storm.test"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	srv := &functions.Server{Config: cfg, Catalog: billing.DefaultCatalog(), Accounts: st, History: st, Keys: st, Meter: st,
		Events: st, Scheduler: &mock.Scheduler{}, Payments: pay, Webhooks: payments.NewWebhook(whsec), Clock: clock.NewFixed(now),
		Random: rand.Reader, Log: slog.New(slog.DiscardHandler)}
	r := &refServer{t: t, mux: http.NewServeMux()}
	for _, f := range srv.Functions() {
		for _, p := range f.Paths {
			r.mux.Handle(p, f.Handler)
		}
	}
	return r
}

func (r *refServer) deliver(payload []byte) refAnswer {
	req := httptest.NewRequest("POST", "/api/stripe/webhook", bytes.NewReader(payload))
	req.Header.Set("Stripe-Signature", sign(payload))
	rec := httptest.NewRecorder()
	r.mux.ServeHTTP(rec, req)
	var body struct {
		Applied bool `json:"applied"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	return refAnswer{status: rec.Code, raw: rec.Body.String(), applied: body.Applied}
}

// ---- state ----

func newStore(t *testing.T, project string) (*store.Store, *firestore.Client) {
	t.Helper()
	client, err := firestore.NewClient(context.Background(), project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return store.New(client, billing.DefaultCatalog().Free()), client
}

// clearProject deletes a project's documents from the emulator, if it can:
// a transaction that a kill left open holds its locks for a while.
func clearProject(project string) {
	req, err := http.NewRequest(http.MethodDelete, "http://"+os.Getenv("FIRESTORE_EMULATOR_HOST")+
		"/emulator/v1/projects/"+project+"/databases/(default)/documents", nil)
	if err != nil {
		return
	}
	if res, err := (&http.Client{Timeout: 3 * time.Second}).Do(req); err == nil {
		res.Body.Close()
	}
}

// countEvents counts the event ids recorded in a project (store's
// stripeEvents collection).
func countEvents(ctx context.Context, t *testing.T, c *firestore.Client) int {
	t.Helper()
	docs, err := c.Collection("stripeEvents").Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	return len(docs)
}

// state is what an account shows: plan, balance, subscription, live grants
// and every ledger entry.
type state struct {
	Plan         string
	Credits      int64
	Subscription billing.Subscription
	Grants       []string
	Ledger       []string
	entries      []billing.Entry
}

func snapshot(t *testing.T, st *store.Store, uid string, now time.Time) state {
	t.Helper()
	ctx := context.Background()
	a, err := st.Account(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	s := state{Plan: a.Plan, Credits: a.Balance(now)}
	if a.Subscription != nil {
		s.Subscription = *a.Subscription
		s.Subscription.UpdatedAt = s.Subscription.UpdatedAt.UTC()
		s.Subscription.CurrentPeriodEnd = s.Subscription.CurrentPeriodEnd.UTC()
	}
	for _, g := range a.LiveGrants(now) {
		s.Grants = append(s.Grants, fmt.Sprintf("%s %s %d/%d until %s", g.ID, g.Source, g.Remaining, g.Amount, g.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	sort.Strings(s.Grants)
	if s.entries, err = st.Ledger(ctx, uid, 500); err != nil {
		t.Fatal(err)
	}
	if len(s.entries) == 500 {
		t.Fatalf("account %s has 500 ledger entries or more: raise the limit", uid)
	}
	for _, e := range s.entries {
		s.Ledger = append(s.Ledger, entryLine(e))
	}
	sort.Strings(s.Ledger)
	return s
}

func entryLine(e billing.Entry) string {
	return fmt.Sprintf("%s %s %s %+d grant=%s at=%s expires=%s %q", e.ID, e.Kind, e.Source, e.Credits,
		e.GrantID, e.At.UTC().Format(time.RFC3339Nano), e.ExpiresAt.UTC().Format(time.RFC3339Nano), e.Note)
}

// diff says how got differs from want: plan, credits, subscription and live
// grants exactly, and the ledger by sameLedger.
func diff(got, want state) string {
	var b strings.Builder
	if got.Plan != want.Plan || got.Credits != want.Credits {
		fmt.Fprintf(&b, "  plan %s, %d credits; want %s, %d credits\n", got.Plan, got.Credits, want.Plan, want.Credits)
	}
	if got.Subscription != want.Subscription {
		fmt.Fprintf(&b, "  subscription %+v\n          want %+v\n", got.Subscription, want.Subscription)
	}
	b.WriteString(linesDiff("grant", got.Grants, want.Grants))
	if !sameLedger(got.entries, want.entries) {
		b.WriteString(ledgerDiff(got.Ledger, want.Ledger))
	}
	return b.String()
}

// sameLedger: every entry the same, except that clawbacks are compared by
// the credits taken back from each grant. A clawback entry is keyed by the
// cumulative amount reversed, so two partial refunds of one payment that
// arrive in the other order record one entry (the larger figure first;
// the smaller then changes nothing) where in order they record two; the
// credits taken back, and so the balance, are the same.
func sameLedger(got, want []billing.Entry) bool {
	key := func(es []billing.Entry) (map[string]bool, map[string]int64) {
		exact, taken := map[string]bool{}, map[string]int64{}
		for _, e := range es {
			if e.Kind == billing.EntryClawback {
				taken[e.GrantID] += e.Credits
				continue
			}
			exact[entryLine(e)] = true
		}
		return exact, taken
	}
	ge, gt := key(got)
	we, wt := key(want)
	return reflect.DeepEqual(ge, we) && reflect.DeepEqual(gt, wt)
}

func ledgerDiff(got, want []string) string { return linesDiff("ledger", got, want) }

func linesDiff(name string, got, want []string) string {
	var b strings.Builder
	in := func(xs []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range xs {
			m[x] = true
		}
		return m
	}
	gm, wm := in(got), in(want)
	for _, x := range got {
		if !wm[x] {
			fmt.Fprintf(&b, "  %s only after the storm: %s\n", name, x)
		}
	}
	for _, x := range want {
		if !gm[x] {
			fmt.Fprintf(&b, "  %s only in order:        %s\n", name, x)
		}
	}
	return b.String()
}
