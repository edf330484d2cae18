package functions_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/firebaseauth"
	"github.com/paymeter/paymeter/internal/emulator"
	"github.com/paymeter/paymeter/internal/mock"
)

func (h *harness) bearer(token, method, path, body string) response {
	h.t.Helper()
	return h.do(method, path, body, "Authorization", "Bearer "+token)
}

// dashboard is what GET /api/user and GET /api/ledger show the holder of token.
func (h *harness) dashboard(token string) (user map[string]any, ledger []any) {
	h.t.Helper()
	res := h.bearer(token, "GET", "/api/user", "")
	if res.status != http.StatusOK {
		h.t.Fatalf("GET /api/user = %d %s", res.status, res.raw)
	}
	led := h.bearer(token, "GET", "/api/ledger", "")
	if led.status != http.StatusOK {
		h.t.Fatalf("GET /api/ledger = %d %s", led.status, led.raw)
	}
	return res.body["user"].(map[string]any), led.body["entries"].([]any)
}

// A password sign-up on the Auth emulator has an unverified email: with
// REQUIRE_VERIFIED_EMAIL it can sign in and use the dashboard, but gets no
// Free credits until a token says its email is verified; then it gets them
// once, however many calls carry that token at the same time.
func TestUnverifiedPasswordAccountGetsFreeCreditsOnceVerified(t *testing.T) {
	emulator.Auth(t)
	verifier, err := firebaseauth.New(context.Background(), emulator.Project())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessAuth(t, map[string]string{"REQUIRE_VERIFIED_EMAIL": "true"}, verifier)
	email := fmt.Sprintf("verify-%d@example.com", time.Now().UnixNano())
	uid, unverified := emulator.SignUp(t, email, "password-1")

	u, ledger := h.dashboard(unverified)
	if u["uid"] != uid || u["email"] != email || u["plan"] != "Free" || u["credits"].(float64) != 0 ||
		u["freeCreditsPending"] != "verify_email" || u["nextGrantAt"] != nil || len(u["grants"].([]any)) != 0 || len(ledger) != 0 {
		t.Fatalf("unverified account shows %v, ledger %v; want Free, 0 credits, freeCreditsPending verify_email", u, ledger)
	}
	if len(h.sched.Tasks()) != 0 {
		t.Fatalf("a Free grant was scheduled for an unverified account: %+v", h.sched.Tasks())
	}
	created := h.bearer(unverified, "POST", "/api/keys", `{"name":"ci"}`)
	if created.status != http.StatusCreated {
		t.Fatalf("POST /api/keys = %d %s", created.status, created.raw)
	}
	key := created.body["key"].(string)
	if res := h.do("POST", "/api/meter", "", "X-API-Key", key); res.status != http.StatusPaymentRequired || errorCode(t, res) != "insufficient_credits" {
		t.Fatalf("metered call before verification = %d %s", res.status, res.raw)
	}

	emulator.VerifyEmail(t, uid)
	if u, _ := h.dashboard(unverified); u["credits"].(float64) != 0 {
		t.Fatalf("a token minted before verification released the credits: %v", u)
	}
	_, verified := emulator.SignIn(t, email, "password-1")
	const calls = 8
	var wg sync.WaitGroup
	statuses := make(chan int, calls)
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- serve(h.mux, "GET", "/api/user", "", "Authorization", "Bearer "+verified).status
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Fatalf("a concurrent first verified call answered %d", s)
		}
	}
	u, ledger = h.dashboard(verified)
	if u["credits"].(float64) != 50 || u["freeCreditsPending"] != nil || u["nextGrantAt"] != t0.Add(billing.Week).Format(time.RFC3339) {
		t.Fatalf("verified account shows %v; want 50 credits, nothing pending, the next grant a week on", u)
	}
	if len(ledger) != 1 || ledger[0].(map[string]any)["credits"].(float64) != 50 {
		t.Fatalf("ledger = %v, want one Free grant of 50", ledger)
	}
	if len(h.sched.Tasks()) != 1 || h.sched.Tasks()[0] != (billing.GrantTask{UID: uid, Period: 1, At: t0.Add(billing.Week)}) {
		t.Fatalf("scheduled = %+v, want the one period-1 grant", h.sched.Tasks())
	}
	if res := h.do("POST", "/api/meter", "", "X-API-Key", key); res.status != http.StatusOK || res.body["credits"].(float64) != 49 {
		t.Fatalf("metered call after verification = %d %s", res.status, res.raw)
	}
}

func TestFreeCreditsAtSignUp(t *testing.T) {
	for _, tt := range []struct {
		name    string
		require string
		token   string
		credits float64
		pending any
	}{
		{"Google (verified) with REQUIRE_VERIFIED_EMAIL", "true", "verified-g1", 50, nil},
		{"unverified with REQUIRE_VERIFIED_EMAIL", "true", "token-p1", 0, "verify_email"},
		{"unverified without it (make dev)", "", "token-p2", 50, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarnessAuth(t, map[string]string{"REQUIRE_VERIFIED_EMAIL": tt.require}, tokens{})
			u, _ := h.dashboard(tt.token)
			if u["credits"].(float64) != tt.credits || u["freeCreditsPending"] != tt.pending {
				t.Fatalf("GET /api/user = %v; want %v credits, freeCreditsPending %v", u, tt.credits, tt.pending)
			}
			if want := int(tt.credits / 50); len(h.sched.Tasks()) != want {
				t.Fatalf("scheduled %+v, want %d task(s)", h.sched.Tasks(), want)
			}
		})
	}
}

// Stripe mails receipts to the customer's email: it must be one the user
// proved is theirs.
func TestStripeCustomerGetsTheEmailOnlyFromAVerifiedToken(t *testing.T) {
	w := newWorld(t, mock.NewStore(), true)
	for _, tt := range []struct {
		token, uid string
		email      any
	}{
		{"token-p1", "p1", nil},
		{"verified-g1", "g1", "g1@example.com"},
	} {
		w.must(w.do("POST", "/api/checkout", `{"plan":"Basic","subscribe":false}`, "Authorization", "Bearer "+tt.token), 200)
		c := w.last("customers")
		if md, _ := c["metadata"].(map[string]any); md["uid"] != tt.uid || c["email"] != tt.email {
			t.Fatalf("%s: Stripe customer = %v, want email %v", tt.token, c, tt.email)
		}
	}
}
