package emulator

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/paymeter/paymeter/internal/toolbuild"
)

// Unavailable fails the test under CI=true, where every test server must
// run, and skips it elsewhere; what names the missing server.
func Unavailable(t testing.TB, what string, err error) {
	t.Helper()
	unavailable(t, fmt.Sprintf("%s unavailable (CI=true makes this a failure): %v", what, err))
}

// BuildTool builds pkg from the repo's tools/<module> module (its own go.mod,
// so that the tool's dependencies never touch the main module) into the user
// cache, under a hash of the module's go.mod and go.sum, and returns the
// binary. A cached binary is reused; a build is renamed into place, so test
// binaries building at once do not clash.
func BuildTool(t testing.TB, module, pkg string) string {
	t.Helper()
	dir, err := toolsModule(module)
	if err != nil {
		Unavailable(t, module, err)
	}
	start := time.Now()
	bin, built, err := toolbuild.Build(dir, module, pkg)
	if err != nil {
		Unavailable(t, module, err)
	}
	if built {
		t.Logf("built %s in %s: %s", pkg, time.Since(start).Round(time.Millisecond), bin)
	}
	return bin
}

// toolsModule finds tools/<module> above the working directory.
func toolsModule(module string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "tools", module)
		if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no tools/%s/go.mod above the working directory", module)
		}
		dir = parent
	}
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
