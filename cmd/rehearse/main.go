// Command rehearse runs the deployable source zip the way Cloud Functions
// (2nd gen) runs it, and checks the product end to end through a front that
// behaves like Firebase Hosting and Cloud Run. It is `make rehearse`
// (scripts/rehearse.sh), part of `make test`.
//
// It builds terraform/build/source.zip with terraform/build-source.sh,
// unzips it alone into a temporary directory and builds it as Google's Go
// buildpack does: a generated main package (functions.local/app) that imports
// the root package and starts the Functions Framework, with -mod=readonly,
// no network and only the zip's go.mod and go.sum. Each entry point then runs
// as a process of its own with the production configuration (K_SERVICE,
// FUNCTION_TARGET, the environment of terraform/functions.tf, the Stripe
// secrets as Secret Manager mounts them), against the Firestore and Auth
// emulators, the Cloud Tasks emulator and stripe-mock. The functions reach
// Stripe and Cloud Tasks at their real hostnames through HTTPS_PROXY (the
// front answers with certificates of its own CA, trusted via SSL_CERT_FILE),
// and a metadata server per function (GCE_METADATA_HOST) gives each its
// service account's tokens. A call to any other host fails the rehearsal.
//
// Usage:
//
//	go run ./cmd/rehearse [-serve] [-keep]
//
// The Firestore and Auth emulators must be running (FIRESTORE_EMULATOR_HOST,
// FIREBASE_AUTH_EMULATOR_HOST); scripts/rehearse.sh starts them.
package main

import (
	"archive/zip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/paymeter/paymeter/internal/toolbuild"
)

// deployedFn is one deployed function, as terraform/functions.tf's
// local.functions and terraform/iam.tf give it: name, entry point, who may
// invoke it, the account it runs as and the secrets it mounts.
type deployedFn struct {
	name, entry string
	public      bool
	account     string // account id, before @PROJECT.iam.gserviceaccount.com
	secrets     []string
}

var (
	tfFunction = regexp.MustCompile(`(?m)^    ([a-z-]+) = \{\n((?:      .*\n)+?)    \}`)
	tfField    = func(name string) *regexp.Regexp { return regexp.MustCompile(`(?m)^\s*` + name + `\s*=\s*(.*)$`) }
	tfAccount  = regexp.MustCompile(`resource "google_service_account" "(\w+)" \{[^}]*?account_id\s*=\s*"([^"]+)"`)
	tfQuoted   = regexp.MustCompile(`"([A-Z_]+)"`)
)

// loadDeployed reads the deployed functions from terraform/functions.tf and
// the accounts' ids from terraform/iam.tf, so that the rehearsal runs what
// Terraform deploys and cannot drift from it.
func loadDeployed(root string) ([]deployedFn, error) {
	fns, err := os.ReadFile(filepath.Join(root, "terraform", "functions.tf"))
	if err != nil {
		return nil, err
	}
	iam, err := os.ReadFile(filepath.Join(root, "terraform", "iam.tf"))
	if err != nil {
		return nil, err
	}
	ids := map[string]string{}
	for _, m := range tfAccount.FindAllStringSubmatch(string(iam), -1) {
		ids[m[1]] = m[2]
	}
	field := func(block, name string) string {
		if m := tfField(name).FindStringSubmatch(block); m != nil {
			return strings.Trim(strings.TrimSpace(m[1]), `"`)
		}
		return ""
	}
	var out []deployedFn
	for _, m := range tfFunction.FindAllStringSubmatch(string(fns), -1) {
		entry := field(m[2], "entry_point")
		if entry == "" {
			continue
		}
		d := deployedFn{name: m[1], entry: entry, public: field(m[2], "public") == "true", account: ids[field(m[2], "account")]}
		if d.account == "" {
			return nil, fmt.Errorf("terraform/functions.tf: %s runs as %q, which terraform/iam.tf does not create", d.name, field(m[2], "account"))
		}
		for _, q := range tfQuoted.FindAllStringSubmatch(field(m[2], "secrets"), -1) {
			d.secrets = append(d.secrets, q[1])
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, errors.New("terraform/functions.tf: no functions found")
	}
	return out, nil
}

// secretValues are the rehearsal's values of the secrets Secret Manager
// mounts; a secret not listed gets a value named after it.
var secretValues = map[string]string{
	"STRIPE_SECRET_KEY":        stripeKey,
	"STRIPE_WEBHOOK_SECRET":    webhookSecret,
	"PAYMETER_OPERATOR_SECRET": "rehearsal-operator-secret-0123456789abcdef",
}

const (
	projectNumber = "123456789012"
	stripeKey     = "sk_test_rehearsal"
	webhookSecret = "whsec_rehearsal"
	// lowestGo is the Go of the first go126 builder: go.mod's go line must
	// not ask for more, or the builder fetches another toolchain.
	lowestGo = "1.26.0"
)

type rehearsal struct {
	root, tmp string
	ci        bool
	front     *front
	site      string // the Hosting origin
	proxyURL  string
	procs     []*exec.Cmd
	failures  []string
	out       io.Writer
}

func main() {
	serve := flag.Bool("serve", false, "keep everything running after the checks, until interrupted")
	keep := flag.Bool("keep", false, "keep the temporary directory (logs, build)")
	flag.Parse()
	r := &rehearsal{out: os.Stdout, ci: os.Getenv("CI") == "true"}
	// Interrupted (or done serving): end every process started, then exit.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		r.stop()
		os.Exit(130)
	}()
	code := r.run(*serve)
	r.stop()
	if *keep || code != 0 {
		fmt.Fprintf(r.out, "rehearse: logs and build in %s\n", r.tmp)
	} else if r.tmp != "" {
		os.RemoveAll(r.tmp)
	}
	os.Exit(code)
}

func (r *rehearsal) say(format string, args ...any) {
	fmt.Fprintf(r.out, "rehearse: "+format+"\n", args...)
}

// fail records a failed check and goes on.
func (r *rehearsal) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.failures = append(r.failures, msg)
	fmt.Fprintf(r.out, "rehearse: FAIL %s\n", msg)
}

func (r *rehearsal) run(serve bool) int {
	var err error
	if r.root, err = repoRoot(); err != nil {
		r.say("FAIL %v", err)
		return 1
	}
	if r.tmp, err = os.MkdirTemp("", "paymeter-rehearse-"); err != nil {
		r.say("FAIL %v", err)
		return 1
	}
	if err := r.setUp(); err != nil {
		r.say("FAIL %v", err)
		r.showLogs()
		return 1
	}
	r.checks()
	r.figures()
	if len(r.front.unexpected) > 0 {
		r.fail("the functions called hosts that the rehearsal does not stand in for: %s", strings.Join(r.front.unexpected, "; "))
	}
	if len(r.failures) > 0 {
		r.showLogs()
		r.say("%d check(s) failed", len(r.failures))
		return 1
	}
	r.say("every check passed")
	if serve {
		fmt.Fprintf(r.out, "Paymeter rehearsal running at %s\n", r.site)
		select {} // until a signal
	}
	return 0
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "terraform", "build-source.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run it inside the repository (no terraform/build-source.sh above here)")
		}
		dir = parent
	}
}

// setUp builds and starts everything, in order.
func (r *rehearsal) setUp() error {
	project := os.Getenv("GOOGLE_CLOUD_PROJECT")
	fsHost, authHost := os.Getenv("FIRESTORE_EMULATOR_HOST"), os.Getenv("FIREBASE_AUTH_EMULATOR_HOST")
	if project == "" || fsHost == "" || authHost == "" {
		return errors.New("the Firestore and Auth emulators are not configured (run scripts/rehearse.sh, which starts them)")
	}
	bin, err := r.buildFunctions()
	if err != nil {
		return err
	}
	stripeBin, err := r.buildTool("stripe-mock", "github.com/stripe/stripe-mock")
	if err != nil {
		return err
	}
	tasksBin, err := r.buildTool("cloudtasks-emulator", "github.com/aertje/cloud-tasks-emulator")
	if err != nil {
		return err
	}

	auth, err := newAuthority()
	if err != nil {
		return err
	}
	caFile := filepath.Join(r.tmp, "ca.pem")
	if err := os.WriteFile(caFile, auth.caPEM, 0o644); err != nil {
		return err
	}
	rewrites, headers, region, err := readFirebaseJSON(filepath.Join(r.root, "firebase.json"))
	if err != nil {
		return err
	}
	f := &front{auth: auth, project: project, number: projectNumber, region: region, rewrites: rewrites,
		headers: headers, tlsConns: make(chan net.Conn), log: r.out}
	r.front = f
	if st, err := os.Stat(filepath.Join(r.root, "web", "dist", "index.html")); err == nil && !st.IsDir() {
		f.webDir = filepath.Join(r.root, "web", "dist")
	} else if r.ci {
		return errors.New("web/dist is not built (scripts/rehearse.sh builds it with web/test.sh build)")
	} else {
		r.say("web/dist is not built: the site serves the API only")
	}
	deployed, err := loadDeployed(r.root)
	if err != nil {
		return err
	}
	for _, d := range deployed {
		f.services = append(f.services, &service{Name: d.name, Entry: d.entry, Public: d.public,
			Account: d.account + "@" + project + ".iam.gserviceaccount.com",
			host:    fmt.Sprintf("%s-%s.%s.run.app", d.name, projectNumber, region)})
	}
	for _, rw := range rewrites {
		if rw.Function != "" && f.byName(rw.Function) == nil {
			return fmt.Errorf("firebase.json rewrites %s to %s, which is not deployed", rw.Source, rw.Function)
		}
	}

	// The front's listeners: the site, the proxy, and what came through it.
	siteL, err := listen()
	if err != nil {
		return err
	}
	proxyL, err := listen()
	if err != nil {
		return err
	}
	r.site = "http://" + siteL.Addr().String()
	r.proxyURL = "http://" + proxyL.Addr().String()

	// stripe-mock and the Cloud Tasks emulator; the emulator sends its
	// tasks through the proxy, as Cloud Tasks reaches run.app.
	stripePort, tasksPort, oidcPort := freePort(), freePort(), freePort()
	f.stripeMock = "http://127.0.0.1:" + stripePort
	f.tasksGRPC = "127.0.0.1:" + tasksPort
	f.tasksIssuer = "http://127.0.0.1:" + oidcPort
	if err := r.start("stripe-mock", stripeBin, nil, "-http-addr", "127.0.0.1:"+stripePort, "-strict-version-check"); err != nil {
		return err
	}
	queue := fmt.Sprintf("projects/%s/locations/%s/queues/paymeter-grants", project, region)
	if err := r.start("cloud-tasks-emulator", tasksBin, []string{"HTTPS_PROXY=" + r.proxyURL, "SSL_CERT_FILE=" + caFile},
		"-host", "127.0.0.1", "-port", tasksPort, "-openid-issuer", f.tasksIssuer, "-queue", queue); err != nil {
		return err
	}
	if err := waitHTTP(f.stripeMock+"/v1/customers", 30*time.Second); err != nil {
		return fmt.Errorf("stripe-mock: %w", err)
	}
	if err := waitHTTP(f.tasksIssuer+"/jwks", 30*time.Second); err != nil {
		return fmt.Errorf("cloud tasks emulator: %w", err)
	}
	if f.tasksKeys, err = fetchKeys(f.tasksIssuer + "/jwks"); err != nil {
		return err
	}
	go func() { _ = http.Serve(siteL, f.hosting()) }()
	go func() { _ = http.Serve(proxyL, f.proxy()) }()
	go func() { _ = http.Serve(chanListener{conns: f.tlsConns, addr: proxyL.Addr()}, f.https()) }()

	// The functions, each with its own metadata server.
	env := r.functionEnv(project, region, queue)
	for i, s := range f.services {
		mdL, err := listen()
		if err != nil {
			return err
		}
		go func() { _ = http.Serve(mdL, f.metadata(s)) }()
		s.port = atoiPort(freePort())
		e := append([]string{}, env...)
		e = append(e, "PORT="+strconv.Itoa(s.port), "K_SERVICE="+s.Name, "K_REVISION="+s.Name+"-00001-rhs",
			"K_CONFIGURATION="+s.Name, "FUNCTION_TARGET="+s.Entry, "FUNCTION_SIGNATURE_TYPE=http",
			"GCE_METADATA_HOST="+mdL.Addr().String(), "HTTPS_PROXY="+r.proxyURL, "SSL_CERT_FILE="+caFile)
		for _, secret := range deployed[i].secrets {
			v, ok := secretValues[secret]
			if !ok {
				v = "rehearsal-" + strings.ToLower(secret)
			}
			e = append(e, secret+"="+v+"\n")
		}
		s.started = time.Now()
		if err := r.start(s.Name, bin, e); err != nil {
			return err
		}
		s.pid = r.procs[len(r.procs)-1].Process.Pid
	}
	// Cold start: process start to its first answer (init has run, the
	// Functions Framework listens).
	for _, s := range f.services {
		if err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/", s.port), 60*time.Second); err != nil {
			return fmt.Errorf("function %s did not start: %w", s.Name, err)
		}
		s.ready = time.Since(s.started)
	}
	r.say("site %s, proxy %s; %d functions up", r.site, r.proxyURL, len(f.services))
	return nil
}

// functionEnv is the environment terraform/functions.tf gives every
// function (local.function_env), with the run.app URLs of the task handlers.
func (r *rehearsal) functionEnv(project, region, queue string) []string {
	grant := fmt.Sprintf("https://task-grant-%s.%s.run.app", projectNumber, region)
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + r.tmp,
		"GOOGLE_CLOUD_PROJECT=" + project,
		"FIRESTORE_EMULATOR_HOST=" + os.Getenv("FIRESTORE_EMULATOR_HOST"),
		"FIREBASE_AUTH_EMULATOR_HOST=" + os.Getenv("FIREBASE_AUTH_EMULATOR_HOST"),
		"PUBLIC_URL=" + r.site,
		"CORS_ORIGINS=" + r.site,
		"METER_COSTS=/api/meter=1",
		"TASKS_QUEUE=" + queue,
		"TASKS_GRANT_URL=" + grant,
		"TASKS_AUDIENCE=" + grant,
		"TASKS_SERVICE_ACCOUNT=paymeter-tasks@" + project + ".iam.gserviceaccount.com",
		"TASKS_RECONCILE_URL=" + fmt.Sprintf("https://task-reconcile-%s.%s.run.app", projectNumber, region),
		"LOG_FORMAT=json",
		"METER_MODE=txn",
		"LEASE_TTL=30s",
		"LEASE_IDLE=3s",
		"LEASE_MAX_BLOCK=1000",
		"KEY_CACHE_TTL=10s",
		"REQUIRE_VERIFIED_EMAIL=true",
	}
}

// buildFunctions builds the source zip, unzips it alone and builds it as
// the Go buildpack does. It returns the binary.
func (r *rehearsal) buildFunctions() (string, error) {
	t0 := time.Now()
	zipPath := filepath.Join(r.root, "terraform", "build", "source.zip")
	cmd := exec.Command(filepath.Join(r.root, "terraform", "build-source.sh"), zipPath)
	cmd.Dir = r.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build-source.sh: %v\n%s", err, out)
	} else {
		r.say("%s", strings.TrimSpace(string(out)))
	}
	src := filepath.Join(r.tmp, "workspace", "serverless_function_source_code")
	if err := unzip(zipPath, src); err != nil {
		return "", err
	}
	gomod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("the zip has no go.mod: %w", err)
	}
	module := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(gomod)
	goLine := regexp.MustCompile(`(?m)^go\s+(\S+)`).FindSubmatch(gomod)
	if module == nil || goLine == nil {
		return "", errors.New("go.mod names no module or no go version")
	}
	if v := string(goLine[1]); versionAbove(v, lowestGo) {
		r.fail("go.mod says go %s: the go126 builder may be older (from %s) and would fetch a toolchain; say go %s", v, lowestGo, lowestGo)
	}
	if regexp.MustCompile(`(?m)^toolchain\s`).Match(gomod) {
		r.fail("go.mod has a toolchain line: the builder would fetch that toolchain")
	}
	// The buildpack's generated main (template_declarative): import the
	// root package for its init, start the Functions Framework on PORT.
	app := filepath.Join(src, "functions.local", "app")
	if err := os.MkdirAll(app, 0o755); err != nil {
		return "", err
	}
	main := fmt.Sprintf(`// Binary main file implements an HTTP server that loads and runs user's code
// on incoming HTTP requests.
package main

import (
	"log"
	"net/http"
	"os"

	_ %q

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
)

func main() {
	http.HandleFunc("/robots.txt", http.NotFound)
	http.HandleFunc("/favicon.ico", http.NotFound)

	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.Start(port); err != nil {
		log.Fatalf("Function failed to start: %%v\n", err)
	}
}
`, string(module[1]))
	if err := os.WriteFile(filepath.Join(app, "main.go"), []byte(main), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(r.tmp, "bin", "main")
	build := exec.Command("go", "build", "-mod=readonly", "-o", bin, "./functions.local/app")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "GOPROXY=off", "GOTOOLCHAIN=local",
		"GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("the zip does not build as the Go buildpack builds it (go build -mod=readonly ./functions.local/app):\n%s", out)
	}
	r.say("built the zip as the Go buildpack does in %s", time.Since(t0).Round(time.Millisecond))
	return bin, nil
}

// versionAbove reports whether Go version a is above b (both x.y.z).
func versionAbove(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < 3; i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x > y
		}
	}
	return false
}

func unzip(path, dir string) error {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return err
	}
	defer zr.Close()
	for _, f := range zr.File {
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			return fmt.Errorf("zip entry %s escapes", f.Name)
		}
		if f.FileInfo().IsDir() {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// buildTool builds pkg of tools/<module> as the tests do (toolbuild.Build:
// the same cache, the same key).
func (r *rehearsal) buildTool(module, pkg string) (string, error) {
	bin, _, err := toolbuild.Build(filepath.Join(r.root, "tools", module), module, pkg)
	return bin, err
}

// start runs a process in its own process group, its output in a log file.
func (r *rehearsal) start(name, bin string, env []string, args ...string) error {
	logf, err := os.Create(filepath.Join(r.tmp, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = env
	} else {
		cmd.Env = os.Environ()
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	r.procs = append(r.procs, cmd)
	return nil
}

// stop ends every process the rehearsal started (their process groups).
func (r *rehearsal) stop() {
	for _, c := range r.procs {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
	}
	for _, c := range r.procs {
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

func (r *rehearsal) showLogs() {
	if r.tmp == "" {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(r.tmp, "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(r.out, "---- %s (last lines)\n%s\n", filepath.Base(l), strings.Join(lines, "\n"))
	}
}

func listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func freePort() string {
	l, err := listen()
	if err != nil {
		panic(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func atoiPort(p string) int { n, _ := strconv.Atoi(p); return n }

// waitHTTP waits until GET url answers anything.
func waitHTTP(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		res, err := c.Get(url)
		if err == nil {
			res.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no answer from %s within %s: %w", url, timeout, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
