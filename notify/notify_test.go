package notify_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/functions"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/devtasks"
	"github.com/paymeter/paymeter/internal/emulator"
	"github.com/paymeter/paymeter/notify"
	"github.com/paymeter/paymeter/paymeterclient"
	"github.com/paymeter/paymeter/store"
	"github.com/paymeter/paymeter/tasks"
)

const (
	receiverEnv   = "PAYMETER_TEST_RECEIVER" // the receiver process: its listen address
	receiverLog   = "PAYMETER_TEST_RECEIVER_LOG"
	webhookSecret = "whsec_operator_test_only"
	taskSecret    = "task-secret-test"
)

// TestMain runs the operator's receiver instead of the tests when the test
// binary is started as one (receiverEnv set): a real process that the tests
// kill and restart.
func TestMain(m *testing.M) {
	if addr := os.Getenv(receiverEnv); addr != "" {
		runReceiver(addr, os.Getenv(receiverLog))
		return
	}
	os.Exit(m.Run())
}

// runReceiver serves the operator's webhook as an operator would with
// paymeterclient: a verified event is appended to logPath as "id type",
// anything else answers 400.
func runReceiver(addr, logPath string) {
	var mu sync.Mutex
	http.HandleFunc("POST /hook", func(w http.ResponseWriter, r *http.Request) {
		ev, err := paymeterclient.ReadEvent(r, webhookSecret)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		f, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			http.Error(w, "log", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(f, "%s %s %s\n", ev.ID, ev.Type, ev.Data)
		f.Close()
		w.WriteHeader(http.StatusNoContent)
	})
	fmt.Fprintln(os.Stderr, http.ListenAndServe(addr, nil))
	os.Exit(1)
}

// receiver is the operator's webhook receiver, a process of its own.
type receiver struct {
	t    *testing.T
	addr string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{t: t, addr: "127.0.0.1:" + emulator.FreePort(t), log: filepath.Join(t.TempDir(), "events")}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *receiver) url() string { return "http://" + r.addr + "/hook" }

func (r *receiver) start() {
	r.t.Helper()
	r.cmd = exec.Command(os.Args[0], "-test.run=^$")
	r.cmd.Env = append(os.Environ(), receiverEnv+"="+r.addr, receiverLog+"="+r.log)
	r.cmd.Stderr = os.Stderr
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(r.cmd, r.done)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", r.addr); err == nil {
			c.Close()
			return
		}
	}
	r.t.Fatal("the receiver did not start")
}

// kill kills the receiver process (SIGKILL) and waits for it.
func (r *receiver) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		<-r.done
		r.cmd = nil
	}
}

// events returns the events received, by type, with their ids.
func (r *receiver) events() map[string][]string {
	r.t.Helper()
	out := map[string][]string{}
	f, err := os.Open(r.log)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 3)
		out[parts[1]] = append(out[parts[1]], parts[0])
	}
	return out
}

// switchMailer sends with whichever mailer is set: tests change the SMTP
// credentials while a task retries.
type switchMailer struct {
	mu sync.Mutex
	m  notify.Mailer
}

func (s *switchMailer) set(m notify.Mailer) { s.mu.Lock(); s.m = m; s.mu.Unlock() }
func (s *switchMailer) Send(ctx context.Context, e notify.Email) error {
	s.mu.Lock()
	m := s.m
	s.mu.Unlock()
	return m.Send(ctx, e)
}

type tokens struct{}

func (tokens) Verify(_ context.Context, tok string) (billing.Identity, error) {
	uid, ok := strings.CutPrefix(tok, "token-")
	if !ok || uid == "" {
		return billing.Identity{}, billing.ErrUnauthenticated
	}
	return billing.Identity{UID: uid, Email: uid + "@example.com", EmailVerified: true}, nil
}

type noGrants struct{}

func (noGrants) ScheduleGrant(context.Context, billing.GrantTask) error { return nil }

// stack is the product as the dev server wires it, with notices delivered
// by the in-process scheduler to TaskNotify, emails to Mailpit and events
// to the receiver.
type stack struct {
	t        *testing.T
	mux      *http.ServeMux
	store    *store.Store
	clock    *clock.Dev
	local    *devtasks.Queue
	dispatch *notify.Dispatcher
	notice   http.Handler
	mail     *emulator.Mailpit
	mailer   *switchMailer
	recv     *receiver
	logs     *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newStack(t *testing.T) *stack {
	t.Helper()
	emulator.Firestore(t)
	mail := emulator.StartMailpit(t)
	client, err := firestore.NewClient(context.Background(), fmt.Sprintf("demo-notify-%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"PUBLIC_URL": "http://127.0.0.1:8000"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	cat := billing.DefaultCatalog()
	st := store.New(client, cat.Free())
	s := &stack{t: t, mux: http.NewServeMux(), store: st, clock: clock.NewDev(), mail: mail, logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(s.logs, nil))
	s.recv = startReceiver(t)
	good, err := notify.NewSMTP(mail.URL(mail.Password), "Paymeter <noreply@example.com>")
	if err != nil {
		t.Fatal(err)
	}
	s.mailer = &switchMailer{m: good}
	s.local = devtasks.New(s.clock, func(context.Context, billing.GrantTask) error { return nil }, log)
	s.local.DeliverNoticesWith(func(ctx context.Context, nt billing.NoticeTask) error {
		return devtasks.DeliverNoticeHTTP(s.notice, taskSecret)(ctx, nt)
	})
	s.dispatch = notify.NewDispatcher(s.local, log)
	st.OnNotices(s.dispatch.Dispatch)
	srv := &functions.Server{Config: cfg, Catalog: cat, Accounts: st, History: st, Keys: st, Meter: st, Events: st,
		Scheduler: noGrants{}, Auth: tokens{}, Clock: s.clock, Random: rand.Reader, Log: log, Tasks: st,
		TaskGuard: func(string) func(http.Handler) http.Handler { return tasks.RequireSecret(taskSecret) },
		Outbox:    st, Mailer: s.mailer, Notices: s.local,
		OperatorWebhook: &notify.Webhook{URL: s.recv.url(), Secret: webhookSecret,
			Client: &http.Client{Timeout: 2 * time.Second}}}
	fns := srv.Functions()
	for _, f := range fns {
		if f.Name == "TaskNotify" {
			s.notice = f.Handler
		}
	}
	srv.Mount(s.mux, fns)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs)
		}
	})
	return s
}

func (s *stack) do(method, path, body string, header ...string) (int, string) {
	s.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	s.mux.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func (s *stack) newKey(uid string) string {
	s.t.Helper()
	code, body := s.do("POST", "/api/keys", `{"name":"ci"}`, "Authorization", "Bearer token-"+uid)
	if code != http.StatusCreated {
		s.t.Fatalf("create key: %d %s", code, body)
	}
	var out struct{ Key string }
	_ = json.Unmarshal([]byte(body), &out)
	return out.Key
}

// meter makes one metered call and returns its status and how long it took.
func (s *stack) meter(key string) (int, time.Duration) {
	s.t.Helper()
	start := time.Now()
	code, _ := s.do("POST", "/api/meter", "", "Authorization", "Bearer "+key)
	return code, time.Since(start)
}

// deliver waits for the scheduling under way, then runs every task due
// within d of the dev clock.
func (s *stack) deliver(d time.Duration) {
	s.t.Helper()
	s.dispatch.Wait()
	if _, err := s.local.Advance(context.Background(), d); err != nil {
		s.t.Fatal(err)
	}
}

// redeliver posts the notice's task to TaskNotify again, as Cloud Tasks may.
func (s *stack) redeliver(uid, id string) {
	s.t.Helper()
	if err := devtasks.DeliverNoticeHTTP(s.notice, taskSecret)(context.Background(), billing.NoticeTask{UID: uid, ID: id}); err != nil {
		s.t.Fatalf("redeliver %s: %v", id, err)
	}
}

func subjects(msgs []emulator.MailMessage) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Subject)
	}
	return out
}

func TestSpendingFreeCreditsNotifiesOnceEach(t *testing.T) {
	s := newStack(t)
	key := s.newKey("alice")
	for i := range 50 {
		if code, _ := s.meter(key); code != http.StatusOK {
			t.Fatalf("call %d: status %d", i+1, code)
		}
	}
	for range 3 {
		if code, _ := s.meter(key); code != http.StatusPaymentRequired {
			t.Fatalf("call after 50: status %d", code)
		}
	}
	// The operator's receiver is down when the tasks first run: the emails
	// go, the events wait, and come once it is back.
	s.recv.kill()
	s.deliver(0)
	if got := s.mail.To(t, "alice@example.com"); len(got) != 2 {
		t.Fatalf("emails while the receiver is down = %v, want 2", subjects(got))
	}
	if got := s.recv.events(); len(got) != 0 {
		t.Fatalf("events delivered to a dead receiver: %v", got)
	}
	if n := s.local.Len(); n != 2 {
		t.Fatalf("%d tasks pending, want the 2 retrying", n)
	}
	s.recv.start()
	s.deliver(time.Minute)
	if n := s.local.Len(); n != 0 {
		t.Fatalf("%d tasks still pending after the receiver came back", n)
	}
	// Cloud Tasks may deliver a task again: nothing is sent twice.
	s.redeliver("alice", "low-balance-1")
	s.redeliver("alice", "exhausted-1")

	mails := s.mail.To(t, "alice@example.com")
	want := map[string]bool{"Your credits are running low: 9 left": true, "You have run out of credits": true}
	if len(mails) != 2 || !want[mails[0].Subject] || !want[mails[1].Subject] || mails[0].Subject == mails[1].Subject {
		t.Fatalf("emails = %v, want one low-balance and one exhausted", subjects(mails))
	}
	if text := s.mail.Text(t, mails[len(mails)-1].ID); !strings.Contains(text, "below your alert threshold of 10") {
		t.Errorf("low-balance email text:\n%s", text)
	}
	events := s.recv.events()
	if len(events[billing.NoticeLowBalance]) != 1 || len(events[billing.NoticeExhausted]) != 1 || len(events) != 2 {
		t.Fatalf("events = %v, want one credits.low and one credits.exhausted", events)
	}
	if id := events[billing.NoticeLowBalance][0]; id != notify.EventID("alice", "low-balance-1") {
		t.Errorf("event id %s is not the notice's stable id", id)
	}
	// The ledger says that the two notices went out.
	code, body := s.do("GET", "/api/ledger", "", "Authorization", "Bearer token-alice")
	if code != http.StatusOK || strings.Count(body, `"kind":"notice"`) != 2 || !strings.Contains(body, "Email sent: You have run out of credits") {
		t.Fatalf("ledger: %d %s", code, body)
	}
}

func TestFailedRenewalEmailsOnce(t *testing.T) {
	s := newStack(t)
	s.newKey("bob") // provisions the account
	fail := billing.InvoiceFailed{InvoiceID: "in_1", SubscriptionID: "sub_1", Plan: "Basic",
		PeriodEnd: time.Now().Add(30 * 24 * time.Hour), Created: time.Now()}
	// Stripe sends the event, then again (a retry), and a second event about
	// the same invoice.
	for _, id := range []string{"evt_1", "evt_1", "evt_2"} {
		if _, err := s.store.ApplyEvent(context.Background(), id, "bob", func(a *billing.Account) error {
			return a.Apply(billing.Event{ID: id, Created: fail.Created, Change: fail}, billing.DefaultCatalog(), time.Now())
		}); err != nil {
			t.Fatal(err)
		}
	}
	s.deliver(0)
	s.redeliver("bob", "payment-failed-in_1")
	mails := s.mail.To(t, "bob@example.com")
	if len(mails) != 1 || mails[0].Subject != "A payment failed" {
		t.Fatalf("emails = %v, want one payment failed", subjects(mails))
	}
	if ev := s.recv.events()[billing.NoticePaymentFailed]; len(ev) != 1 {
		t.Fatalf("payment.failed events = %v", ev)
	}
}

func TestBadSMTPCredentialsAreRetriedAndNeverSlowAMeteredCall(t *testing.T) {
	s := newStack(t)
	bad, err := notify.NewSMTP(s.mail.URL("wrong-password"), "Paymeter <noreply@example.com>")
	if err != nil {
		t.Fatal(err)
	}
	good := s.mailer.m
	s.mailer.set(bad)
	key := s.newKey("carol")
	var slowest time.Duration
	for range 41 { // 9 left: below the threshold of 10
		code, took := s.meter(key)
		if code != http.StatusOK {
			t.Fatalf("metered call: %d", code)
		}
		slowest = max(slowest, took)
	}
	s.deliver(0)
	s.deliver(2 * time.Second) // retried with backoff, failing each time
	if got := s.mail.To(t, "carol@example.com"); len(got) != 0 {
		t.Fatalf("emails with bad credentials: %v", subjects(got))
	}
	pending := s.local.Pending()
	if len(pending) != 1 || pending[0].Attempts < 2 {
		t.Fatalf("pending = %+v, want the notice retrying", pending)
	}
	e, err := s.store.Notice(context.Background(), "carol", "low-balance-1")
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != billing.OutboxPending || !strings.Contains(e.LastError, "smtp") || e.WebhookSentAt.IsZero() {
		t.Fatalf("outbox entry = %+v, want pending with an SMTP error and the event sent", e)
	}
	for _, where := range []string{e.LastError, s.logs.String()} {
		if strings.Contains(where, s.mail.Password) || strings.Contains(where, "wrong-password") {
			t.Fatal("an SMTP password reached the outbox or the logs")
		}
	}
	// A metered call while the notice fails is as fast as any: the crossing
	// call only wrote the outbox entry.
	code, took := s.meter(key)
	if code != http.StatusOK || took > max(slowest, 50*time.Millisecond)*4 {
		t.Errorf("metered call during failing notices: %d in %s (slowest before: %s)", code, took, slowest)
	}
	// The credentials are fixed: the next retry delivers, once.
	s.mailer.set(good)
	s.deliver(time.Hour)
	s.redeliver("carol", "low-balance-1")
	if got := s.mail.To(t, "carol@example.com"); len(got) != 1 {
		t.Fatalf("emails after the fix = %v, want 1", subjects(got))
	}
	if ev := s.recv.events()[billing.NoticeLowBalance]; len(ev) != 1 {
		t.Fatalf("credits.low events = %v, want 1 (sent before the email was)", ev)
	}
}

func TestReceiverRefusesTamperedAndStaleEvents(t *testing.T) {
	r := startReceiver(t)
	body := []byte(`{"id":"evt_x","type":"credits.low","created":1,"data":{"account":"u1"}}`)
	post := func(body []byte, sig string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", r.url(), bytes.NewReader(body))
		req.Header.Set(notify.SignatureHeader, sig)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	now := time.Now()
	if code := post(body, notify.Sign(webhookSecret, now, body)); code != http.StatusNoContent {
		t.Fatalf("a signed event: %d", code)
	}
	tampered := bytes.Replace(body, []byte("u1"), []byte("u2"), 1)
	if code := post(tampered, notify.Sign(webhookSecret, now, body)); code != http.StatusBadRequest {
		t.Errorf("a tampered body: %d", code)
	}
	if code := post(body, notify.Sign(webhookSecret, now.Add(-10*time.Minute), body)); code != http.StatusBadRequest {
		t.Errorf("a stale timestamp: %d", code)
	}
	if code := post(body, notify.Sign("whsec_wrong", now, body)); code != http.StatusBadRequest {
		t.Errorf("another secret: %d", code)
	}
	if got := r.events()["credits.low"]; len(got) != 1 {
		t.Errorf("events accepted = %v, want the one signed", got)
	}
}
