package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paymeter/paymeter/internal/emulator"
)

// The metered API in front of a real upstream process (cmd/sampleapi),
// through two real dev-server processes on the emulators: receipts, refunds,
// streaming, body caps, what reaches the upstream, and idempotency across
// processes.

type proc struct {
	origin string
	pid    int
}

// start builds pkg and runs it with env, waiting for a stdout line starting
// with ready; it returns the rest of that line and the process id.
func start(t *testing.T, bin string, env []string, ready string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), ready); ok {
				lines <- rest
			}
		}
	}()
	select {
	case l := <-lines:
		return strings.TrimSpace(l), cmd.Process.Pid
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not print %q", bin, ready)
	}
	return "", 0
}

func build(t *testing.T, dir, pkg string) string {
	t.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

type reply struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func call(t *testing.T, ctx context.Context, method, url, body string, header ...string) (reply, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return reply{}, err
	}
	r := reply{status: res.StatusCode, header: res.Header, body: b}
	_ = json.Unmarshal(b, &r.json)
	return r, nil
}

func mustCall(t *testing.T, ctx context.Context, method, url, body string, header ...string) reply {
	t.Helper()
	r, err := call(t, ctx, method, url, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func errCode(r reply) string {
	e, _ := r.json["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func TestUpstreamsBehindTheMeter(t *testing.T) {
	emulator.Firestore(t)
	emulator.Auth(t)
	dir := t.TempDir()
	devBin, sampleBin := build(t, dir, "./cmd/dev"), build(t, dir, "./cmd/sampleapi")
	sample, _ := start(t, sampleBin, []string{"ADDR=127.0.0.1:0"}, "sampleapi listening on ")
	env := []string{"METER_UPSTREAMS=/v1/=" + sample, "METER_UPSTREAM_TIMEOUT=1s", "METER_COSTS=/api/meter=1,/v1/=2",
		"MAX_BODY_BYTES=4096", "LOG_FORMAT=text", "STRIPE_SECRET_KEY=", "HOST=127.0.0.1"}
	var devs []proc
	for range 2 {
		port := emulator.FreePort(t)
		origin, pid := start(t, devBin, append(env, "PORT="+port, "PUBLIC_URL=http://127.0.0.1:"+port), "Paymeter running at ")
		devs = append(devs, proc{origin: strings.Replace(origin, "localhost", "127.0.0.1", 1), pid: pid})
	}
	dev := devs[0].origin
	ctx := context.Background()

	uid, token := emulator.SignUp(t, fmt.Sprintf("up-%d@example.com", time.Now().UnixNano()), "secret123")
	user := func() int64 {
		r := mustCall(t, ctx, "GET", dev+"/api/user", "", "Authorization", "Bearer "+token)
		u, _ := r.json["user"].(map[string]any)
		n, ok := u["credits"].(float64)
		if !ok {
			t.Fatalf("GET /api/user: %d %s", r.status, r.body)
		}
		return int64(n)
	}
	if got := user(); got != 50 {
		t.Fatalf("a new account has %d credits, want 50", got)
	}
	kr := mustCall(t, ctx, "POST", dev+"/api/keys", `{"name":"upstream"}`, "Authorization", "Bearer "+token)
	key, _ := kr.json["key"].(string)
	if kr.status != http.StatusCreated || key == "" {
		t.Fatalf("create key: %d %s", kr.status, kr.body)
	}
	auth := []string{"Authorization", "Bearer " + key}
	balance := int64(50)
	unchanged := func(what string) {
		t.Helper()
		// A refund runs before the answer is written, except when the
		// consumer left: give that one a moment.
		deadline := time.Now().Add(5 * time.Second)
		for got := user(); got != balance; got = user() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: balance %d, want %d (the credits were not given back)", what, got, balance)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	t.Run("2xx passes through with receipts", func(t *testing.T) {
		r := mustCall(t, ctx, "POST", dev+"/v1/stats?lang=en", "Hello world. Hello again!", append(auth, "Content-Type", "text/plain")...)
		balance -= 2
		if r.status != 200 || r.json["words"] != float64(4) || r.json["sentences"] != float64(2) {
			t.Fatalf("POST /v1/stats = %d %s", r.status, r.body)
		}
		if r.header.Get("X-Credits-Cost") != "2" || r.header.Get("X-Credits-Remaining") != strconv.FormatInt(balance, 10) ||
			!strings.HasPrefix(r.header.Get("X-Request-Id"), "req_") {
			t.Errorf("receipt headers: %v", r.header)
		}
		unchanged("after a 2xx")
	})

	t.Run("no consumer secret reaches the upstream", func(t *testing.T) {
		r := mustCall(t, ctx, "GET", dev+"/v1/echo?q=1", "", "X-API-Key", key, "Cookie", "session=secret-cookie",
			"X-Paymeter-Account", "someone-else", "Connection", "keep-alive, X-Hop", "X-Hop", "hop", "X-Custom", "kept")
		balance -= 2
		if r.status != 200 {
			t.Fatalf("GET /v1/echo = %d %s", r.status, r.body)
		}
		if strings.Contains(string(r.body), key) || strings.Contains(string(r.body), "secret-cookie") ||
			strings.Contains(string(r.body), key[len(key)-10:]) {
			t.Fatalf("the upstream received a consumer secret: %s", r.body)
		}
		h, _ := r.json["headers"].(map[string]any)
		first := func(k string) string {
			v, _ := h[k].([]any)
			if len(v) == 0 {
				return ""
			}
			s, _ := v[0].(string)
			return s
		}
		if first("X-Paymeter-Account") != uid || !strings.HasPrefix(first("X-Paymeter-Key-Id"), "key_") ||
			first("X-Request-Id") != r.header.Get("X-Request-Id") || first("X-Custom") != "kept" {
			t.Errorf("upstream headers: %s", r.body)
		}
		for _, k := range []string{"Authorization", "X-Api-Key", "Cookie", "X-Hop"} {
			if _, ok := h[k]; ok {
				t.Errorf("the upstream received %s", k)
			}
		}
		if r.json["path"] != "/echo" || r.json["query"] != "q=1" {
			t.Errorf("path %v query %v, want /echo and q=1", r.json["path"], r.json["query"])
		}
	})

	t.Run("5xx is 502 and refunded", func(t *testing.T) {
		r := mustCall(t, ctx, "GET", dev+"/v1/status/503", "", auth...)
		if r.status != http.StatusBadGateway || errCode(r) != "upstream_error" || r.header.Get("X-Credits-Cost") != "0" {
			t.Fatalf("503 upstream = %d %s %v", r.status, r.body, r.header)
		}
		unchanged("after a 5xx")
	})

	t.Run("a hang past the timeout is 504 and refunded", func(t *testing.T) {
		r := mustCall(t, ctx, "GET", dev+"/v1/sleep?ms=3000", "", auth...)
		if r.status != http.StatusGatewayTimeout || errCode(r) != "upstream_timeout" {
			t.Fatalf("hang = %d %s", r.status, r.body)
		}
		unchanged("after a timeout")
	})

	t.Run("a consumer that goes away first is refunded", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if _, err := call(t, cctx, "GET", dev+"/v1/sleep?ms=800", "", auth...); err == nil {
			t.Fatal("the call finished before the client went away")
		}
		unchanged("after the consumer left")
	})

	t.Run("a body over the cap is 413 with nothing debited", func(t *testing.T) {
		big := strings.Repeat("x", 5000)
		r := mustCall(t, ctx, "POST", dev+"/v1/stats", big, auth...)
		if r.status != http.StatusRequestEntityTooLarge || errCode(r) != "payload_too_large" {
			t.Fatalf("5000 bytes = %d %s", r.status, r.body)
		}
		// Chunked, with no Content-Length.
		req, _ := http.NewRequest("POST", dev+"/v1/stats", io.MultiReader(strings.NewReader(big)))
		req.Header.Set("Authorization", "Bearer "+key)
		req.ContentLength = -1
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("5000 bytes chunked = %d", res.StatusCode)
		}
		unchanged("after 413s")
	})

	t.Run("a 10 MiB answer streams with bounded memory", func(t *testing.T) {
		before := peakRSS(t, devs[0].pid)
		req, _ := http.NewRequest("GET", dev+"/v1/bytes?n=10485760", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		balance -= 2
		if err != nil || n != 10<<20 || res.StatusCode != 200 {
			t.Fatalf("streamed %d bytes, status %d, err %v", n, res.StatusCode, err)
		}
		after := peakRSS(t, devs[0].pid)
		t.Logf("dev server peak RSS (VmHWM): %d KiB before, %d KiB after a 10 MiB answer", before, after)
		if after-before > 8<<10 {
			t.Errorf("peak RSS grew by %d KiB streaming 10 MiB: the answer was buffered", after-before)
		}
	})

	t.Run("50 concurrent repeats over two processes debit once", func(t *testing.T) {
		idem := fmt.Sprintf("idem-%d", time.Now().UnixNano())
		var wg sync.WaitGroup
		replies := make([]reply, 50)
		errs := make([]error, 50)
		for i := range replies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				replies[i], errs[i] = call(t, ctx, "POST", devs[i%2].origin+"/api/meter", "", append(auth, "Idempotency-Key", idem)...)
			}()
		}
		wg.Wait()
		balance--
		replayed := 0
		for i, r := range replies {
			if errs[i] != nil || r.status != 200 || string(r.body) != string(replies[0].body) {
				t.Fatalf("repeat %d: %v %d %s (first: %s)", i, errs[i], r.status, r.body, replies[0].body)
			}
			if r.header.Get("Idempotent-Replayed") == "true" {
				replayed++
			}
		}
		if replayed != 49 {
			t.Errorf("%d answers replayed, want 49", replayed)
		}
		unchanged("after 50 repeats of one key")
		r := mustCall(t, ctx, "POST", dev+"/v1/stats", "x", append(auth, "Idempotency-Key", idem)...)
		if r.status != http.StatusConflict || errCode(r) != "idempotency_conflict" {
			t.Errorf("the same key on another path = %d %s", r.status, r.body)
		}
	})

	t.Run("an upstream call repeated with its key is forwarded once", func(t *testing.T) {
		idem := fmt.Sprintf("up-%d", time.Now().UnixNano())
		var wg sync.WaitGroup
		replies := make([]reply, 6)
		for i := range replies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				replies[i] = mustCall(t, ctx, "POST", devs[i%2].origin+"/v1/stats", "one two three", append(auth, "Idempotency-Key", idem)...)
			}()
		}
		wg.Wait()
		balance -= 2
		for i, r := range replies {
			if r.status != 200 || r.json["words"] != float64(3) {
				t.Fatalf("repeat %d: %d %s", i, r.status, r.body)
			}
		}
		unchanged("after repeats of an upstream call")
		// A refunded call stores nothing: its retry runs again.
		idem = fmt.Sprintf("fail-%d", time.Now().UnixNano())
		for range 2 {
			r := mustCall(t, ctx, "GET", dev+"/v1/status/500", "", append(auth, "Idempotency-Key", idem)...)
			if r.status != http.StatusBadGateway || r.header.Get("Idempotent-Replayed") != "" {
				t.Fatalf("failing upstream with a key = %d %s %v", r.status, r.body, r.header)
			}
		}
		unchanged("after refunded idempotent calls")
	})

	t.Run("usage is counted per route", func(t *testing.T) {
		r := mustCall(t, ctx, "GET", dev+"/api/usage?days=1", "", "Authorization", "Bearer "+token)
		days, _ := r.json["days"].([]any)
		if len(days) != 1 {
			t.Fatalf("usage: %s", r.body)
		}
		day, _ := days[0].(map[string]any)
		routes, _ := day["routes"].(map[string]any)
		if day["credits"] != float64(50-balance) || routes["/v1/"] != float64(8) || routes["/api/meter"] != float64(1) {
			t.Errorf("usage of today = %v, want %d credits: 8 on /v1/ and 1 on /api/meter", day, 50-balance)
		}
	})
}

// peakRSS is the process's peak resident set (VmHWM), in KiB.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
