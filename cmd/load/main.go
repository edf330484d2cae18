// Command load drives the metered API (POST /api/meter) of one or more
// dev servers over HTTP with M concurrent clients across K keys for N calls,
// and prints calls/s, p50/p99 latency, Firestore commits per 1,000 calls
// (from each dev server's GET /dev/stats) and any overspend.
//
// With -zipf s, each call picks its key from a Zipf distribution of
// exponent s over the keys (key 1 the busiest), as real traffic does;
// without it, client i uses key i mod keys. With -revocations N it then
// measures, N times, how long a key revoked while hot keeps working: from
// DELETE /api/keys/{id} answering to the first 401 on every server.
//
//	go run ./cmd/load -url http://localhost:8000,http://localhost:8001 -clients 50 -keys 1000 -zipf 1.1 -calls 40000
//	go run ./cmd/load -url http://localhost:8000 -clients 10 -calls 0 -revocations 50
//
// It signs users up through the Auth emulator, creates their keys and buys
// them credits through the offline Stripe stand-in, unless given -keys-from.
//
//	go run ./cmd/load -url http://localhost:8000 -clients 50 -keys 1 -calls 20000
//
// The balance check waits (up to -settle) for leased credits to come back:
// the dev servers return idle leases after LEASE_IDLE.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

type options struct {
	urls    []string
	auth    string
	clients int
	keys    int
	calls   int64
	settle  time.Duration
	label   string
	zipf    float64
	revoke  int
	warmup  int64
	setups  int
	rate    float64
}

func run(args []string, out io.Writer) error {
	fl := flag.NewFlagSet("load", flag.ContinueOnError)
	urls := fl.String("url", "http://localhost:8000", "dev server origins, comma-separated; clients are spread over them")
	auth := fl.String("auth", os.Getenv("FIREBASE_AUTH_EMULATOR_HOST"), "the Auth emulator's host:port")
	clients := fl.Int("clients", 50, "concurrent clients")
	keys := fl.Int("keys", 1, "API keys (one user each); client i uses key i mod keys")
	calls := fl.Int64("calls", 10000, "metered calls in all")
	settle := fl.Duration("settle", 20*time.Second, "how long to wait for leased credits to come back before checking the balance")
	label := fl.String("label", "", "a name for this run in the output")
	zipf := fl.Float64("zipf", 0, "if above 1, each call picks its key from a Zipf distribution of this exponent")
	revoke := fl.Int("revocations", 0, "then revoke this many hot keys, one after another, and report how long each kept working")
	warmup := fl.Int64("warmup", 0, "calls made first and left out of the figures (each instance's first lease on each account)")
	setups := fl.Int("setups", 16, "users set up at once")
	rate := fl.Float64("rate", 0, "if set, the measured calls are offered at this many per second in all (a fixed rate below saturation), each call's latency counted from when it was due; 0: as fast as the clients go")
	if err := fl.Parse(args); err != nil {
		return err
	}
	o := options{auth: *auth, clients: *clients, keys: *keys, calls: *calls, settle: *settle, label: *label, zipf: *zipf, revoke: *revoke,
		warmup: *warmup, setups: max(1, *setups), rate: *rate}
	for _, u := range strings.Split(*urls, ",") {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			o.urls = append(o.urls, u)
		}
	}
	if len(o.urls) == 0 || o.clients < 1 || o.keys < 1 || o.calls < 0 || o.auth == "" || (o.zipf != 0 && o.zipf <= 1) || o.rate < 0 {
		return errors.New("need -url, -auth (or FIREBASE_AUTH_EMULATOR_HOST), positive -clients and -keys, -calls of 0 or more, -zipf above 1 if set, and -rate of 0 or more")
	}
	ctx := context.Background()
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: o.clients + 10}}
	l := &loader{o: o, hc: hc}

	if o.calls == 0 {
		return l.revocations(ctx, out)
	}
	users, err := l.setUp(ctx)
	if err != nil {
		return err
	}
	if o.warmup > 0 {
		l.drive(ctx, users, o.warmup, 0)
	}
	before := l.stats(ctx)
	res := l.drive(ctx, users, o.calls, o.rate)
	// Counted before the balances are read back: those reads are the
	// check's, not the calls'.
	stats := l.stats(ctx).minus(before)
	after, settled := l.balances(ctx, users, res.ok)
	res.print(out, o, users, after, settled, stats)
	if o.revoke > 0 {
		return l.revocations(ctx, out)
	}
	return nil
}

// share is the fraction of the calls that key i (from 0) gets.
func (o options) share(i int) float64 {
	if o.zipf == 0 {
		clients := o.clients / o.keys
		if i < o.clients%o.keys {
			clients++
		}
		return float64(clients) / float64(o.clients)
	}
	var h float64
	for k := 1; k <= o.keys; k++ {
		h += math.Pow(float64(k), -o.zipf)
	}
	return math.Pow(float64(i+1), -o.zipf) / h
}

type loader struct {
	o  options
	hc *http.Client
}

type user struct {
	token, key string
	keyID      string
	granted    int64 // the balance before the run
	ok         atomic.Int64
}

// setUp makes o.keys users, each with a key and credits for its share of
// the calls (and a margin), 4 at a time (the emulator serialises the key
// transactions, which query the owner's keys).
func (l *loader) setUp(ctx context.Context) ([]*user, error) {
	users := make([]*user, l.o.keys)
	run := randomHex(4)
	errs := make(chan error, l.o.keys)
	sem := make(chan struct{}, l.o.setups)
	var wg sync.WaitGroup
	for i := range users {
		need := int64(math.Ceil(float64(l.o.calls+l.o.warmup)*l.o.share(i)*1.2)) + 20
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			u, err := l.newUser(ctx, fmt.Sprintf("load-%s-%d@example.com", run, i), need)
			if err != nil {
				errs <- err
				return
			}
			users[i] = u
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return users, nil
}

// newUser signs a user up, makes its key and buys it credits until it has
// need.
func (l *loader) newUser(ctx context.Context, email string, need int64) (*user, error) {
	u := &user{}
	var in struct {
		IDToken string `json:"idToken"`
	}
	err := l.call(ctx, http.MethodPost, "http://"+l.o.auth+"/identitytoolkit.googleapis.com/v1/accounts:signUp?key=dev", "",
		map[string]any{"email": email, "password": "secret123", "returnSecureToken": true}, &in)
	if err != nil {
		return nil, fmt.Errorf("sign up: %w", err)
	}
	u.token = in.IDToken
	var key struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	for try := 1; ; try++ {
		err := l.call(ctx, http.MethodPost, l.o.urls[0]+"/api/keys", u.token, map[string]any{"name": "load"}, &key)
		if err == nil {
			break
		}
		if try == 3 {
			return nil, fmt.Errorf("create key: %w", err)
		}
	}
	u.key, u.keyID = key.Key, key.ID
	for bal, err := l.balance(ctx, u); bal < need; bal, err = l.balance(ctx, u) {
		if err != nil {
			return nil, err
		}
		if err := l.buy(ctx, u); err != nil {
			return nil, err
		}
	}
	bal, err := l.balance(ctx, u)
	if err != nil {
		return nil, err
	}
	u.granted = bal
	return u, nil
}

// buy pays for a Power pack (100,000 credits) through the Stripe stand-in.
func (l *loader) buy(ctx context.Context, u *user) error {
	var s struct {
		SessionID string `json:"sessionId"`
	}
	before, err := l.balance(ctx, u)
	if err != nil {
		return err
	}
	if err := l.call(ctx, http.MethodPost, l.o.urls[0]+"/api/checkout", u.token, map[string]any{"plan": "Power", "subscribe": false}, &s); err != nil {
		return fmt.Errorf("checkout: %w", err)
	}
	if err := l.call(ctx, http.MethodPost, l.o.urls[0]+"/dev/checkout/"+s.SessionID+"/complete", "", nil, nil); err != nil {
		return fmt.Errorf("complete checkout (is the Stripe stand-in on?): %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if b, err := l.balance(ctx, u); err == nil && b > before {
			return nil
		}
	}
	return nil // the next balance check buys again or gives up
}

func (l *loader) balance(ctx context.Context, u *user) (int64, error) {
	var in struct {
		User struct {
			Credits int64 `json:"credits"`
		} `json:"user"`
	}
	if err := l.call(ctx, http.MethodGet, l.o.urls[0]+"/api/user", u.token, nil, &in); err != nil {
		return 0, fmt.Errorf("get user: %w", err)
	}
	return in.User.Credits, nil
}

// balances waits until each user's balance accounts for its successful
// calls, or o.settle passes, and returns the balances.
func (l *loader) balances(ctx context.Context, users []*user, _ int64) ([]int64, bool) {
	out := make([]int64, len(users))
	deadline := time.Now().Add(l.o.settle)
	for {
		settled := true
		for i, u := range users {
			b, err := l.balance(ctx, u)
			if err != nil {
				settled = false
				continue
			}
			out[i] = b
			if u.granted-b != u.ok.Load() {
				settled = false
			}
		}
		if settled || time.Now().After(deadline) {
			return out, settled
		}
		time.Sleep(250 * time.Millisecond)
	}
}

type result struct {
	ok, noCredits, failed int64
	statuses              map[int]int64
	latencies             []time.Duration
	elapsed               time.Duration
}

// drive runs the clients until calls calls have been made.
func (l *loader) drive(ctx context.Context, users []*user, calls int64, rate float64) *result {
	var next atomic.Int64
	var mu sync.Mutex
	res := &result{statuses: map[int]int64{}, latencies: make([]time.Duration, 0, calls)}
	var wg sync.WaitGroup
	start := time.Now()
	for c := range l.o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := users[c%len(users)]
			var zipf *mrand.Zipf
			if l.o.zipf > 1 {
				zipf = mrand.NewZipf(mrand.New(mrand.NewPCG(uint64(c), 1)), l.o.zipf, 1, uint64(len(users)-1))
			}
			url := l.o.urls[c%len(l.o.urls)] + "/api/meter"
			lat := make([]time.Duration, 0, calls/int64(l.o.clients)+1)
			statuses := map[int]int64{}
			for i := next.Add(1); i <= calls; i = next.Add(1) {
				if zipf != nil {
					u = users[zipf.Uint64()]
				}
				t0 := time.Now()
				if rate > 0 {
					// Call i is due at start + i/rate; its latency counts
					// from then, so that a call delayed because every
					// client was busy shows its wait.
					t0 = start.Add(time.Duration(float64(i-1) / rate * float64(time.Second)))
					time.Sleep(time.Until(t0))
				}
				code := l.meter(ctx, url, u.key)
				lat = append(lat, time.Since(t0))
				statuses[code]++
				if code == http.StatusOK {
					u.ok.Add(1)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			res.latencies = append(res.latencies, lat...)
			for k, v := range statuses {
				res.statuses[k] += v
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.ok = res.statuses[http.StatusOK]
	res.noCredits = res.statuses[http.StatusPaymentRequired]
	for code, n := range res.statuses {
		if code != http.StatusOK && code != http.StatusPaymentRequired {
			res.failed += n
		}
	}
	return res
}

// meter makes one metered call and returns its status, 0 for a transport
// error.
func (l *loader) meter(ctx context.Context, url, key string) int {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := l.hc.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

func (r *result) print(out io.Writer, o options, users []*user, after []int64, settled bool, st fsStats) {
	slices.Sort(r.latencies)
	pct := func(p float64) time.Duration {
		if len(r.latencies) == 0 {
			return 0
		}
		return r.latencies[min(len(r.latencies)-1, int(p*float64(len(r.latencies))))]
	}
	calls := int64(len(r.latencies))
	label := o.label
	if label != "" {
		label += ": "
	}
	if o.rate > 0 {
		fmt.Fprintf(out, "%soffered at %.0f calls/s\n", label, o.rate)
	}
	fmt.Fprintf(out, "%s%d calls, %d clients, %d keys, %d servers in %.2fs: %.0f calls/s, p50 %s, p99 %s\n",
		label, calls, o.clients, o.keys, len(o.urls), r.elapsed.Seconds(), float64(calls)/r.elapsed.Seconds(),
		pct(0.50).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond))
	fmt.Fprintf(out, "%s  200: %d, 402: %d, other: %d %v\n", label, r.ok, r.noCredits, r.failed, r.statuses)
	if st.ok {
		fmt.Fprintf(out, "%s  Firestore per 1,000 calls: %.1f commits, %.1f writes, %.1f documents read, %.1f RPCs (%v)\n", label,
			1000*float64(st.commits)/float64(calls), 1000*float64(st.writes)/float64(calls),
			1000*float64(st.reads)/float64(calls), 1000*float64(st.total())/float64(calls), st.rpcs)
		kinds := slices.Sorted(maps.Keys(st.kinds))
		parts := make([]string, len(kinds))
		for i, k := range kinds {
			parts[i] = fmt.Sprintf("%s %.1f", k, 1000*float64(st.kinds[k])/float64(calls))
		}
		fmt.Fprintf(out, "%s  writes per 1,000 calls by document: %s\n", label, strings.Join(parts, ", "))
	} else {
		fmt.Fprintf(out, "%s  Firestore counts unavailable (GET /dev/stats failed)\n", label)
	}
	var debited, served int64
	for i, u := range users {
		debited += u.granted - after[i]
		served += u.ok.Load()
	}
	switch {
	case served > debited:
		fmt.Fprintf(out, "%s  OVERSPEND: %d calls answered 200 beyond the %d credits debited\n", label, served-debited, debited)
	case served < debited:
		fmt.Fprintf(out, "%s  balance short by %d: debited %d for %d calls answered 200 (settled: %v)\n", label, debited-served, debited, served, settled)
	default:
		fmt.Fprintf(out, "%s  overspend: 0 (debited %d = calls answered 200)\n", label, debited)
	}
}

type fsStats struct {
	ok                     bool
	commits, writes, reads int64
	rpcs                   map[string]int64
	kinds                  map[string]int64 // writes by document kind
}

func (s fsStats) total() int64 {
	var n int64
	for k, v := range s.rpcs {
		if k != "" {
			n += v
		}
	}
	return n
}

func (s fsStats) minus(b fsStats) fsStats {
	out := fsStats{ok: s.ok && b.ok, commits: s.commits - b.commits, writes: s.writes - b.writes, reads: s.reads - b.reads,
		rpcs: map[string]int64{}, kinds: map[string]int64{}}
	for k, v := range s.rpcs {
		if d := v - b.rpcs[k]; d != 0 {
			out.rpcs[k] = d
		}
	}
	for k, v := range s.kinds {
		if d := v - b.kinds[k]; d != 0 {
			out.kinds[k] = d
		}
	}
	return out
}

// stats sums GET /dev/stats over the servers.
func (l *loader) stats(ctx context.Context) fsStats {
	sum := fsStats{ok: true, rpcs: map[string]int64{}, kinds: map[string]int64{}}
	for _, u := range l.o.urls {
		var in struct {
			Firestore struct {
				RPCs          map[string]int64 `json:"rpcs"`
				Commits       int64            `json:"commits"`
				Writes        int64            `json:"writes"`
				WritesByKind  map[string]int64 `json:"writesByKind"`
				DocumentsRead int64            `json:"documentsRead"`
			} `json:"firestore"`
		}
		if err := l.call(ctx, http.MethodGet, u+"/dev/stats", "", nil, &in); err != nil {
			sum.ok = false
			continue
		}
		sum.commits += in.Firestore.Commits
		sum.writes += in.Firestore.Writes
		sum.reads += in.Firestore.DocumentsRead
		for k, v := range in.Firestore.RPCs {
			sum.rpcs[k] += v
		}
		for k, v := range in.Firestore.WritesByKind {
			sum.kinds[k] += v
		}
	}
	return sum
}

// call sends a JSON request and decodes a 2xx JSON answer into out.
func (l *loader) call(ctx context.Context, method, url, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := l.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, url, res.StatusCode, bytes.TrimSpace(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// revocations revokes o.revoke hot keys one after another: o.clients
// clients spread over the servers call a fresh key until 50 calls were
// served, the key is revoked, and the time from DELETE answering to the
// first 401 on each server is noted. It prints the p50, p99 and worst of
// the slower server of each revocation.
func (l *loader) revocations(ctx context.Context, out io.Writer) error {
	n := max(l.o.revoke, 1)
	u, err := l.newUser(ctx, fmt.Sprintf("revoke-%s@example.com", randomHex(4)), int64(n)*400)
	if err != nil {
		return err
	}
	var took []time.Duration
	for round := range n {
		if round > 0 {
			var key struct {
				ID  string `json:"id"`
				Key string `json:"key"`
			}
			if err := l.call(ctx, http.MethodPost, l.o.urls[0]+"/api/keys", u.token, map[string]any{"name": "revoke"}, &key); err != nil {
				return fmt.Errorf("create key: %w", err)
			}
			u.key, u.keyID = key.Key, key.ID
		}
		d, err := l.revokeHot(ctx, u)
		if err != nil {
			return fmt.Errorf("revocation %d: %w", round+1, err)
		}
		took = append(took, d)
	}
	slices.Sort(took)
	pct := func(p float64) time.Duration { return took[min(len(took)-1, int(p*float64(len(took))))] }
	label := l.o.label
	if label != "" {
		label += ": "
	}
	fmt.Fprintf(out, "%s%d revocations of a hot key (%d clients, %d servers): first 401 on every server after p50 %s, p99 %s, max %s\n",
		label, n, l.o.clients, len(l.o.urls), pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
	return nil
}

// revokeHot drives u's key until 50 calls were served, revokes it and
// returns how long the slowest server kept serving it.
func (l *loader) revokeHot(ctx context.Context, u *user) (time.Duration, error) {
	var served atomic.Int64
	refused := make([]atomic.Int64, len(l.o.urls)) // unix nanoseconds of each server's first 401
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range l.o.clients {
		i := c % len(l.o.urls)
		url := l.o.urls[i] + "/api/meter"
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				switch l.meter(ctx, url, u.key) {
				case http.StatusOK:
					served.Add(1)
				case http.StatusUnauthorized:
					refused[i].CompareAndSwap(0, time.Now().UnixNano())
					time.Sleep(5 * time.Millisecond)
				default:
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	for deadline := time.Now().Add(30 * time.Second); served.Load() < 50; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return 0, errors.New("the key served fewer than 50 calls in 30s")
		}
	}
	if err := l.call(ctx, http.MethodDelete, l.o.urls[0]+"/api/keys/"+u.keyID, u.token, nil, nil); err != nil {
		return 0, fmt.Errorf("revoke: %w", err)
	}
	revoked := time.Now()
	for deadline := revoked.Add(70 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		var worst time.Duration
		all := true
		for i := range refused {
			at := refused[i].Load()
			if at == 0 {
				all = false
				break
			}
			worst = max(worst, time.Unix(0, at).Sub(revoked))
		}
		if all {
			return max(worst, 0), nil
		}
		if time.Now().After(deadline) {
			return 0, errors.New("a revoked key still works after 70s")
		}
	}
}
