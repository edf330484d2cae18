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
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	origin := "http://" + addr
	// stripe-mock parses Stripe's whole API description before it listens:
	// seconds on an idle machine, much longer on a loaded one. Wait while
	// it runs, and stop at once if it exits.
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(origin + "/v1/customers")
		if err == nil {
			resp.Body.Close()
			return origin
		}
		select {
		case werr := <-exited:
			exited <- werr
			emulator.Unavailable(t, "stripe-mock", fmt.Errorf("exited before answering on %s: %v", addr, werr))
		default:
		}
		if time.Now().After(deadline) {
			emulator.Unavailable(t, "stripe-mock", fmt.Errorf("no answer on %s: %w", addr, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
