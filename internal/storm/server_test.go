package storm

import (
	"bytes"
	"cloud.google.com/go/firestore"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/functions"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/mock"
)

// The server under test runs in a child process: this test binary started
// again with STORM_SERVER=1, so that it can be killed with SIGKILL and
// restarted on the same port. It serves every entry point as the dev server
// and the deployed functions compose them (functions.NewCore, Core.Server,
// Functions) on the Firestore emulator, with three differences:
//   - its payment provider is the test process's Stripe stand-in, reached
//     over HTTP (rpcPayments), as a function reaches Stripe: the dev server's
//     own in-process stand-in would not know the test's charges, and a
//     dispute, which names only its charge, could not be applied;
//   - its clock stands still at STORM_NOW, so that the storm and the
//     in-order reference apply every event at the same time;
//   - Free grant tasks are accepted and dropped (no scheduler runs).

const (
	envServer  = "STORM_SERVER"
	envNow     = "STORM_NOW"
	envStripe  = "STORM_STRIPE_URL"
	serverFlag = "1"
)

func TestMain(m *testing.M) {
	if os.Getenv(envServer) == serverFlag {
		if err := serve(); err != nil {
			fmt.Fprintln(os.Stderr, "storm server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func serve() error {
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	now, err := time.Parse(time.RFC3339Nano, os.Getenv(envNow))
	if err != nil {
		return fmt.Errorf("%s: %w", envNow, err)
	}
	log := functions.NewLogger(os.Stderr, "text")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client, err := firestore.NewClient(ctx, cfg.ProjectID)
	if err != nil {
		return err
	}
	core, err := functions.NewCoreOn(ctx, cfg, log, client)
	if err != nil {
		return err
	}
	pay := &rpcPayments{base: os.Getenv(envStripe), client: &http.Client{Timeout: 10 * time.Second}}
	srv := core.Server(clock.NewFixed(now), &mock.Scheduler{}, pay, cfg.StripeWebhookSecret)
	mux := http.NewServeMux()
	srv.Mount(mux, srv.Functions())
	hs := &http.Server{Addr: "127.0.0.1:" + cfg.Port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return hs.Close()
	}
}

// rpcPayments is billing.Payments on the test process's stand-in, over
// HTTP (served by rpcHandler).
type rpcPayments struct {
	base   string
	client *http.Client
}

var _ billing.Payments = (*rpcPayments)(nil)

// rpcError is an error as it crosses the process boundary.
type rpcError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (p *rpcPayments) call(ctx context.Context, method string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/rpc/"+method, bytes.NewReader(b))
	if err != nil {
		return err
	}
	res, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("stripe stand-in %s: %w", method, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		var e rpcError
		if json.Unmarshal(body, &e) != nil || e.Code == "" {
			return fmt.Errorf("stripe stand-in %s: status %d", method, res.StatusCode)
		}
		switch e.Code {
		case billing.CodeNotFound:
			return fmt.Errorf("%s: %w", e.Message, billing.ErrNotFound)
		case billing.CodeInvalidPlan:
			return fmt.Errorf("%s: %w", e.Message, billing.ErrInvalidPlan)
		}
		return billing.Errorf(e.Code, "%s", e.Message)
	}
	return json.Unmarshal(body, out)
}

func (p *rpcPayments) EnsureCustomer(ctx context.Context, uid, email string) (string, error) {
	var out string
	err := p.call(ctx, "EnsureCustomer", []string{uid, email}, &out)
	return out, err
}

func (p *rpcPayments) CheckoutSession(ctx context.Context, req billing.CheckoutRequest) (billing.Checkout, error) {
	var out billing.Checkout
	err := p.call(ctx, "CheckoutSession", req, &out)
	return out, err
}

func (p *rpcPayments) CancelSubscriptions(ctx context.Context, customerID string) ([]string, error) {
	var out []string
	err := p.call(ctx, "CancelSubscriptions", customerID, &out)
	return out, err
}

func (p *rpcPayments) PortalSession(ctx context.Context, customerID string) (string, error) {
	var out string
	err := p.call(ctx, "PortalSession", customerID, &out)
	return out, err
}

func (p *rpcPayments) Charge(ctx context.Context, id string) (billing.Charge, error) {
	var out billing.Charge
	err := p.call(ctx, "Charge", id, &out)
	return out, err
}

// rpcHandler serves rpcPayments' calls from pay (the test's stand-in).
func rpcHandler(pay billing.Payments) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		var out any
		var err error
		dec := func(v any) bool {
			if e := json.NewDecoder(r.Body).Decode(v); e != nil {
				err = billing.Errorf(billing.CodeBadRequest, "%v", e)
				return false
			}
			return true
		}
		switch m, _ := url.PathUnescape(r.URL.Path[len("/rpc/"):]); m {
		case "EnsureCustomer":
			var in []string
			if dec(&in) && len(in) == 2 {
				out, err = pay.EnsureCustomer(ctx, in[0], in[1])
			}
		case "CheckoutSession":
			var in billing.CheckoutRequest
			if dec(&in) {
				out, err = pay.CheckoutSession(ctx, in)
			}
		case "CancelSubscriptions":
			var in string
			if dec(&in) {
				out, err = pay.CancelSubscriptions(ctx, in)
			}
		case "PortalSession":
			var in string
			if dec(&in) {
				out, err = pay.PortalSession(ctx, in)
			}
		case "Charge":
			var in string
			if dec(&in) {
				out, err = pay.Charge(ctx, in)
			}
		default:
			err = billing.Errorf(billing.CodeNotFound, "no method %s", m)
		}
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			code := billing.ErrorCode(err)
			if errors.Is(err, billing.ErrNotFound) {
				code = billing.CodeNotFound
			}
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(rpcError{Code: code, Message: billing.ErrorMessage(err)})
			return
		}
		_ = json.NewEncoder(w).Encode(out)
	})
}
