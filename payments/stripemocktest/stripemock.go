// Package stripemocktest starts stripe-mock (the version pinned in the
// repo's tools/stripe-mock module, which serves Stripe API 2023-10-16) for
// tests. Where it cannot be built or started, tests skip, except under
// CI=true, where they fail.
package stripemocktest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Start runs a stripe-mock for the test and returns its origin, e.g.
// http://127.0.0.1:41234. It is stopped when the test ends.
func Start(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { binPath, buildErr = build() })
	if buildErr != nil {
		unavailable(t, buildErr)
	}
	port, err := freePort()
	if err != nil {
		unavailable(t, err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, binPath, "-http-addr", addr, "-strict-version-check")
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		cancel()
		unavailable(t, fmt.Errorf("start stripe-mock: %w", err))
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	origin := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(origin + "/v1/customers")
		if err == nil {
			resp.Body.Close()
			return origin
		}
		if time.Now().After(deadline) {
			unavailable(t, fmt.Errorf("stripe-mock did not answer on %s: %w", addr, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("stripe-mock is required under CI: %v", err)
	}
	t.Skipf("stripe-mock unavailable: %v", err)
}

// build compiles stripe-mock from the repo's tools/stripe-mock module into
// the user cache directory, renaming it into place so that test binaries
// building at once do not clash; the Go build cache makes repeats fast.
func build() (string, error) {
	dir, err := toolDir()
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "paymeter")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(out, "stripe-mock")
	tmp := fmt.Sprintf("%s.%d", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, "github.com/stripe/stripe-mock")
	cmd.Dir = dir
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build stripe-mock: %v: %s", err, msg)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// toolDir finds tools/stripe-mock above the working directory.
func toolDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "tools", "stripe-mock")
		if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no tools/stripe-mock/go.mod above the working directory")
		}
		dir = parent
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
