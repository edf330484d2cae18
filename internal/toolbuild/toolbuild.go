// Package toolbuild builds the test and rehearsal tools (stripe-mock, the
// Cloud Tasks emulator, ...) from the repo's tools/<module> modules, each
// with its own go.mod so that a tool's dependencies never touch the main
// module.
package toolbuild

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Build builds pkg of the module in dir (tools/<module>) into the user
// cache, under a hash of the module's go.mod and go.sum, and returns the
// binary and whether it was built now. A cached binary is reused; a build is
// renamed into place, so processes building at once do not clash.
func Build(dir, module, pkg string) (bin string, built bool, err error) {
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", false, fmt.Errorf("%s: %w", module, err)
		}
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "paymeter", module+"-"+hex.EncodeToString(h.Sum(nil))[:16])
	bin = filepath.Join(out, filepath.Base(pkg))
	if _, err := os.Stat(bin); err == nil {
		return bin, false, nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", false, err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", false, fmt.Errorf("build %s: %v\n%s", pkg, err, msg)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", false, err
	}
	return bin, true, nil
}
