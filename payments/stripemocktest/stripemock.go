// Package stripemocktest starts stripe-mock (the version pinned in the
// repo's tools/stripe-mock module, which serves Stripe API 2023-10-16) for
// tests. Where it cannot be built or started, tests skip, except under
// CI=true, where they fail.
package stripemocktest

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/paymeter/paymeter/internal/emulator"
)

// Start runs a stripe-mock for the test and returns its origin, e.g.
// http://127.0.0.1:41234. It is stopped when the test ends.
func Start(t testing.TB) string {
	t.Helper()
	bin := emulator.BuildTool(t, "stripe-mock", "github.com/stripe/stripe-mock")
	addr := "127.0.0.1:" + emulator.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-http-addr", addr, "-strict-version-check")
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		cancel()
		emulator.Unavailable(t, "stripe-mock", err)
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
			emulator.Unavailable(t, "stripe-mock", fmt.Errorf("no answer on %s: %w", addr, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
