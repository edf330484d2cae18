// Command dev is Paymeter's local server: every Cloud Functions entry point,
// the web app and, with no STRIPE_SECRET_KEY, an offline stand-in for Stripe,
// on one origin, against the Firestore and Auth emulators. `make dev` starts
// the emulators and then this. It is never deployed.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/functions"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/devtasks"
	"github.com/paymeter/paymeter/internal/httpjson"
	"github.com/paymeter/paymeter/tasks"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}

func run() error {
	getenv := func(k string) string {
		if k == "LOG_FORMAT" && os.Getenv(k) == "" {
			return "text"
		}
		return os.Getenv(k)
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	for _, k := range []string{"FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"} {
		if os.Getenv(k) == "" {
			return fmt.Errorf("%s is not set: start the emulators with `make dev`", k)
		}
	}
	if cfg.TasksSecret == "" {
		cfg.TasksSecret = randomHex(16) // only this process delivers tasks to itself
	}
	log := functions.NewLogger(os.Stderr, cfg.LogFormat)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	stats := &firestoreStats{rpcs: map[string]int64{}, kinds: map[string]int64{}}
	client, err := countedFirestore(ctx, cfg.ProjectID, stats)
	if err != nil {
		return err
	}
	core, err := functions.NewCoreOn(ctx, cfg, log, client)
	if err != nil {
		return err
	}
	srv, err := newDevServer(ctx, core, os.Getenv("WEB_DIR"))
	if err != nil {
		return err
	}
	srv.mux.HandleFunc("GET /dev/stats", stats.serve)
	ln, err := listen(os.Getenv("HOST"), cfg.Port)
	if err != nil {
		return err
	}
	httpSrv := &http.Server{Handler: srv.mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()
	go func() { _ = srv.local.Run(ctx, time.Second) }()

	fmt.Printf("Paymeter running at http://localhost:%s\n", cfg.Port)
	if u := os.Getenv("MAILPIT_URL"); u != "" {
		fmt.Printf("Mail at %s\n", u) // scripts/mailpit.sh, which `make dev` starts
	}
	fmt.Print(srv.banner())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 8*time.Second) // Cloud Run allows 10 s after SIGTERM
	defer cancel()
	err = httpSrv.Shutdown(shutdown)
	core.Dispatch.Wait()
	if core.Leases != nil {
		// Give the leased credits back now rather than at their expiry.
		err = errors.Join(err, core.Leases.Close(shutdown))
	}
	return err
}

// listen opens the dev server's port on host: 127.0.0.1 when host is empty,
// so that the dev server, its stand-in and its tasks secret are reachable
// from this machine only. HOST=0.0.0.0 widens it, for a container.
func listen(host, port string) (net.Listener, error) {
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("listen on %s port %s: %w", host, port, err)
	}
	return ln, nil
}

// devServer is the dev process: its mux, dev clock and in-process scheduler.
type devServer struct {
	cfg     config.Config
	catalog billing.Catalog
	log     *slog.Logger
	mux     *http.ServeMux
	clock   *clock.Dev
	local   *devtasks.Queue
	pay     devPayments
	srv     *functions.Server
}

// devPayments is the payment provider of the dev server and, for the
// offline stand-in, its /dev routes and its test clock.
type devPayments interface {
	billing.Payments
	// Routes returns the /dev handler, or nil with Stripe itself.
	Routes() http.Handler
	// AdvanceTo renews the stand-in subscriptions whose period ended by now.
	AdvanceTo(ctx context.Context, now time.Time) error
	// Describe is one line for the start banner.
	Describe() string
}

func newDevServer(ctx context.Context, core *functions.Core, webDir string) (*devServer, error) {
	cfg := core.Config
	d := &devServer{cfg: cfg, catalog: core.Catalog, log: core.Log, mux: http.NewServeMux(), clock: clock.NewDev()}
	var grant http.Handler // set below; the scheduler delivers to it
	d.local = devtasks.New(d.clock, func(ctx context.Context, t billing.GrantTask) error {
		return devtasks.DeliverHTTP(grant, cfg.TasksSecret)(ctx, t)
	}, core.Log)

	var notice http.Handler // set below, like grant
	d.local.DeliverNoticesWith(func(ctx context.Context, t billing.NoticeTask) error {
		return devtasks.DeliverNoticeHTTP(notice, cfg.TasksSecret)(ctx, t)
	})
	core.UseNotices(d.local)

	pay, webhookSecret, err := newPayments(ctx, cfg, d)
	if err != nil {
		return nil, err
	}
	d.pay = pay
	d.srv = core.Server(d.clock, d.local, pay, webhookSecret)
	d.srv.TaskGuard = func(string) func(http.Handler) http.Handler { return tasks.RequireSecret(cfg.TasksSecret) }
	fns := d.srv.Functions()
	for _, f := range fns {
		switch f.Name {
		case "TaskGrant":
			grant = f.Handler
		case "TaskNotify":
			notice = f.Handler
		}
	}
	d.srv.Mount(d.mux, fns)
	d.mux.Handle("POST /dev/clock/advance", d.srv.Wrap(http.HandlerFunc(d.advance)))
	if routes := pay.Routes(); routes != nil {
		d.mux.Handle("/dev/", routes)
	}
	if webDir == "" {
		webDir = "web/dist"
	}
	d.mux.Handle("/", spa(webDir))
	return d, nil
}

// advance serves POST /dev/clock/advance {"seconds": N}: the dev clock moves
// on, every task that falls due runs at its time, and the stand-in renews
// the subscriptions whose period ended, like a Stripe test clock.
func (d *devServer) advance(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Seconds int64 `json:"seconds"`
	}
	if err := httpjson.Decode(r, &in); err != nil {
		d.srv.Fail(w, r, err)
		return
	}
	if in.Seconds < 0 || in.Seconds > 10*366*24*3600 {
		d.srv.Fail(w, r, billing.Errorf(billing.CodeBadRequest, `send {"seconds": N} with N from 0 to ten years`))
		return
	}
	target := d.clock.Now().Add(time.Duration(in.Seconds) * time.Second)
	ran := 0
	// Step a day at a time so that renewals and grants interleave in order.
	for now := d.clock.Now(); now.Before(target); now = d.clock.Now() {
		step := min(target.Sub(now), 24*time.Hour)
		n, err := d.local.Advance(r.Context(), step)
		ran += n
		if err != nil {
			d.srv.Fail(w, r, err)
			return
		}
		if err := d.pay.AdvanceTo(r.Context(), d.clock.Now()); err != nil {
			d.srv.Fail(w, r, err)
			return
		}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"now": d.clock.Now().UTC(), "tasksRun": ran, "tasksPending": d.local.Len()})
}

func (d *devServer) banner() string {
	origin := "http://localhost:" + d.cfg.Port
	return fmt.Sprintf(`Payments: %s
Try it:
  TOKEN=$(curl -s -X POST 'http://%s/identitytoolkit.googleapis.com/v1/accounts:signUp?key=dev' -H 'Content-Type: application/json' -d '{"email":"you@example.com","password":"secret123","returnSecureToken":true}' | sed 's/.*"idToken": *"\([^"]*\)".*/\1/')
  KEY=$(curl -s -X POST %s/api/keys -H "Authorization: Bearer $TOKEN" -d '{"name":"try"}' | sed 's/.*"key":"\([^"]*\)".*/\1/')
  curl -i -X POST %s/api/meter -H "Authorization: Bearer $KEY"
`, d.pay.Describe(), os.Getenv("FIREBASE_AUTH_EMULATOR_HOST"), origin, origin)
}

// spa serves the built web app, answering index.html for the app's own
// routes so that a reload on /keys or /checkout/success works.
func spa(dir string) http.Handler {
	files := http.FileServer(http.Dir(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := filepath.Join(dir, filepath.FromSlash(filepath.Clean("/"+r.URL.Path)))
		if st, err := os.Stat(path); err == nil && !st.IsDir() || r.URL.Path == "/" {
			if _, err := os.Stat(filepath.Join(dir, "index.html")); errors.Is(err, os.ErrNotExist) {
				http.Error(w, "the web app is not built: run `make dev` (it runs npm run build in web/)", http.StatusNotFound)
				return
			}
			files.ServeHTTP(w, r)
			return
		}
		if strings.Contains(filepath.Base(r.URL.Path), ".") {
			http.NotFound(w, r) // a missing asset, not an app route
			return
		}
		http.ServeFile(w, r, filepath.Join(dir, "index.html"))
	})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
