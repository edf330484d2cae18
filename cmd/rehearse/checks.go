package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"cloud.google.com/go/firestore"
)

// answer is one HTTP answer, its body decoded when it is JSON.
type answer struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (a answer) String() string {
	b := a.body
	if len(b) > 300 {
		b = b[:300]
	}
	return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(b))
}

// call makes one request with client c. A transport error is an answer
// with status 0.
func call(c *http.Client, method, url string, headers map[string]string, body any) answer {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return answer{body: []byte(err.Error())}
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		return answer{body: []byte(err.Error())}
	}
	defer res.Body.Close()
	a := answer{status: res.StatusCode, header: res.Header}
	a.body, _ = io.ReadAll(res.Body)
	_ = json.Unmarshal(a.body, &a.json)
	return a
}

func num(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}

// checks runs the rehearsal's checks through the front, in order; each
// failure is recorded and the next check still runs where it can.
func (r *rehearsal) checks() {
	f := r.front
	site := &http.Client{Timeout: 20 * time.Second}
	proxyURL, _ := url.Parse(r.proxyURL)
	google := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: f.auth.pool()}}}
	check := func(name string, ok bool, a answer) bool {
		if ok {
			r.say("ok   %s", name)
		} else {
			r.fail("%s: got %s", name, a)
		}
		return ok
	}

	// The site: the web app and a public function through a rewrite.
	if f.webDir != "" {
		a := call(site, "GET", r.site+"/", nil, nil)
		check("Hosting serves web/dist at /", a.status == 200 && strings.Contains(a.header.Get("Content-Type"), "text/html"), a)
		a = call(site, "GET", r.site+"/account/settings", nil, nil)
		check("Hosting answers an app route with index.html", a.status == 200 && strings.Contains(a.header.Get("Content-Type"), "text/html"), a)
	}
	a := call(site, "GET", r.site+"/api/plans", nil, nil)
	check("GET /api/plans through the rewrite to user", a.status == 200 && a.json["plans"] != nil, a)

	// Sign up (email verified, as REQUIRE_VERIFIED_EMAIL asks), a key,
	// metered calls until 402.
	email := fmt.Sprintf("rehearse-%d@example.com", time.Now().UnixNano())
	uid, token, err := r.signUp(email)
	if err != nil {
		r.fail("sign up in the Auth emulator: %v", err)
		return
	}
	bearer := map[string]string{"Authorization": "Bearer " + token}
	a = call(site, "GET", r.site+"/api/user", bearer, nil)
	user, _ := a.json["user"].(map[string]any)
	if !check("sign up: GET /api/user provisions the account with the Free grant (50 credits)", a.status == 200 && num(user["credits"]) == 50, a) {
		return
	}
	a = call(site, "POST", r.site+"/api/keys", bearer, map[string]string{"name": "rehearsal"})
	key, _ := a.json["key"].(string)
	if !check("POST /api/keys answers 201 with the key", a.status == 201 && key != "", a) {
		return
	}
	served := 0
	for i := 0; i < 60; i++ {
		a = call(site, "POST", r.site+"/api/meter", map[string]string{"Authorization": "Bearer " + key}, nil)
		if a.status != 200 {
			break
		}
		served++
	}
	code := ""
	if e, ok := a.json["error"].(map[string]any); ok {
		code, _ = e["code"].(string)
	}
	check(fmt.Sprintf("metered calls: 50 served, then 402 insufficient_credits (served %d)", served),
		served == 50 && a.status == 402 && code == "insufficient_credits", a)

	// Checkout reaches Stripe (stripe-mock) at api.stripe.com.
	a = call(site, "POST", r.site+"/api/checkout", bearer, map[string]any{"plan": "Basic", "subscribe": true})
	check("POST /api/checkout creates a Checkout session at api.stripe.com (stripe-mock)", a.status == 200 && a.json["url"] != nil, a)

	// The private task handlers refuse what Cloud Run refuses.
	grant, reconcile := f.byName("task-grant"), f.byName("task-reconcile")
	tasksSA, functionsSA := f.tasksAccount(), "paymeter-functions@"+f.project+".iam.gserviceaccount.com"
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := time.Now()
	forged := signRS256(other, f.auth.kid, map[string]any{"iss": googleIssuer, "aud": grant.url(), "email": tasksSA,
		"email_verified": true, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	unsignedClaims := map[string]any{"iss": googleIssuer, "aud": grant.url(), "email": tasksSA, "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	body := map[string]any{"uid": uid, "period": 0}
	for _, c := range []struct {
		name  string
		token string
		want  int
	}{
		{"no token", "", 403},
		{"a token signed by someone else", forged, 401},
		{"an unsigned token that claims Cloud Run removed its signature", stripSignature([]byte(`{"alg":"RS256","typ":"JWT"}`), unsignedClaims), 401},
		{"a Google token for another audience (task-reconcile)", f.auth.googleToken(tasksSA, reconcile.url()), 401},
		{"a Google token of the functions' account, which may not invoke", f.auth.googleToken(functionsSA, grant.url()), 403},
	} {
		h := map[string]string{}
		if c.token != "" {
			h["Authorization"] = "Bearer " + c.token
		}
		a := call(google, "POST", grant.url()+"/", h, body)
		check("task-grant through Cloud Run refuses "+c.name+fmt.Sprintf(" (%d)", c.want), a.status == c.want, a)
	}
	before := grant.requests.Load()
	a = call(site, "POST", r.site+"/api/tasks/grant", nil, body)
	check("Hosting has no route to the task handlers", a.status/100 != 2 && grant.requests.Load() == before, a)

	// Two weeks pass with the Free chain lost (the account's Free clock moves
	// back two weeks, its next period unscheduled): the daily reconcile call,
	// as Cloud Scheduler makes it, re-enqueues it on the Cloud Tasks
	// emulator, whose task reaches task-grant through Cloud Run's check.
	if err := r.timeTravel(uid); err != nil {
		r.fail("move the account's Free clock: %v", err)
		return
	}
	a = call(google, "POST", reconcile.url()+"/", map[string]string{"Authorization": "Bearer " + f.auth.googleToken(tasksSA, reconcile.url())}, nil)
	check("reconcile: a Cloud Scheduler call (OIDC, task caller) through Cloud Run answers 200", a.status == 200, a)
	var credits int64 = -1
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		a = call(site, "GET", r.site+"/api/user", bearer, nil)
		user, _ = a.json["user"].(map[string]any)
		// Credits can read 50 before the task's 200 has passed the front
		// (the grant commits first): wait for both.
		if credits = num(user["credits"]); a.status == 200 && credits == 50 && grant.first200.Load() > 0 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	check(fmt.Sprintf("a Free grant delivered by a Cloud Tasks emulator task through Cloud Run (credits %d, want 50)", credits),
		credits == 50 && grant.first200.Load() > 0, a)

	// A signed invoice.paid of stripe-mock's shape grants Basic's credits.
	ev, err := r.invoicePaid(uid)
	if err != nil {
		r.fail("invoice.paid from stripe-mock's fixture: %v", err)
		return
	}
	a = call(site, "POST", r.site+"/api/stripe/webhook", map[string]string{"Stripe-Signature": "t=1,v1=00"}, ev)
	check("webhook refuses a bad signature (400)", a.status == 400, a)
	a = call(site, "POST", r.site+"/api/stripe/webhook", map[string]string{"Stripe-Signature": stripeSignature(ev, webhookSecret)}, ev)
	check("webhook applies a signed invoice.paid (200)", a.status == 200, a)
	a = call(site, "GET", r.site+"/api/user", bearer, nil)
	user, _ = a.json["user"].(map[string]any)
	check(fmt.Sprintf("invoice.paid granted Basic's 1,000 credits (credits %d)", num(user["credits"])), num(user["credits"]) >= 1000, a)
}

// signUp creates a user with a verified email in the Auth emulator and
// returns its uid and a fresh ID token that says the email is verified.
func (r *rehearsal) signUp(email string) (uid, token string, err error) {
	host := "http://" + os.Getenv("FIREBASE_AUTH_EMULATOR_HOST")
	c := &http.Client{Timeout: 10 * time.Second}
	cred := map[string]any{"email": email, "password": "rehearsal-password", "returnSecureToken": true}
	a := call(c, "POST", host+"/identitytoolkit.googleapis.com/v1/accounts:signUp?key=fake-api-key", nil, cred)
	uid, _ = a.json["localId"].(string)
	if a.status != 200 || uid == "" {
		return "", "", fmt.Errorf("signUp: %s", a)
	}
	a = call(c, "POST", host+"/identitytoolkit.googleapis.com/v1/projects/"+r.front.project+"/accounts:update",
		map[string]string{"Authorization": "Bearer owner"}, map[string]any{"localId": uid, "emailVerified": true})
	if a.status != 200 {
		return "", "", fmt.Errorf("verify email: %s", a)
	}
	a = call(c, "POST", host+"/identitytoolkit.googleapis.com/v1/accounts:signInWithPassword?key=fake-api-key", nil, cred)
	token, _ = a.json["idToken"].(string)
	if a.status != 200 || token == "" {
		return "", "", fmt.Errorf("signIn: %s", a)
	}
	return uid, token, nil
}

// timeTravel moves uid's Free clock two weeks and two hours back and leaves
// period 2 as the next one, unscheduled: an account whose chain broke.
func (r *rehearsal) timeTravel(uid string) error {
	ctx := context.Background()
	c, err := firestore.NewClient(ctx, r.front.project)
	if err != nil {
		return err
	}
	defer c.Close()
	anchor := time.Now().Add(-2*7*24*time.Hour - 2*time.Hour).UTC().Truncate(time.Microsecond)
	_, err = c.Collection("accounts").Doc(uid).Update(ctx, []firestore.Update{
		{Path: "freeAnchor", Value: anchor},
		{Path: "nextFreePeriod", Value: 2},
		{Path: "nextGrantAt", Value: anchor.Add(2 * 7 * 24 * time.Hour)},
	})
	return err
}

// invoicePaid is an invoice.paid event around stripe-mock's invoice
// fixture (API 2023-10-16), for a Basic subscription of uid, paid now.
func (r *rehearsal) invoicePaid(uid string) ([]byte, error) {
	req, _ := http.NewRequest("GET", r.front.stripeMock+"/v1/invoices/in_rehearsal", nil)
	req.SetBasicAuth(stripeKey, "")
	req.Header.Set("Stripe-Version", "2023-10-16")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var inv map[string]any
	if err := json.NewDecoder(res.Body).Decode(&inv); err != nil || res.StatusCode != 200 {
		return nil, fmt.Errorf("GET /v1/invoices: %d %v", res.StatusCode, err)
	}
	now := time.Now()
	start, end := now.Add(-time.Minute).Unix(), now.AddDate(0, 1, 0).Unix()
	suffix := hex.EncodeToString([]byte(uid))[:12]
	inv["id"] = "in_rehearsal_" + suffix
	inv["customer"] = "cus_rehearsal_" + suffix
	inv["subscription"] = "sub_rehearsal_" + suffix
	inv["status"], inv["paid"], inv["amount_paid"], inv["billing_reason"] = "paid", true, 500, "subscription_create"
	inv["subscription_details"] = map[string]any{"metadata": map[string]string{"uid": uid}}
	inv["period_start"], inv["period_end"] = start, end
	lines, _ := inv["lines"].(map[string]any)
	data, _ := lines["data"].([]any)
	if len(data) == 0 {
		return nil, fmt.Errorf("stripe-mock's invoice has no lines")
	}
	line, _ := data[0].(map[string]any)
	line["amount"] = 500
	line["period"] = map[string]any{"start": start, "end": end}
	price, _ := line["price"].(map[string]any)
	if price == nil {
		return nil, fmt.Errorf("stripe-mock's invoice line has no price")
	}
	price["lookup_key"], price["metadata"] = "Basic_monthly_price", map[string]string{}
	lines["data"] = data[:1]
	return json.Marshal(map[string]any{"id": "evt_rehearsal_" + suffix, "object": "event", "api_version": "2023-10-16",
		"created": now.Unix(), "type": "invoice.paid", "livemode": false, "pending_webhooks": 1,
		"data": map[string]any{"object": inv}})
}

// stripeSignature is the Stripe-Signature header Stripe sends with body.
func stripeSignature(body []byte, secret string) string {
	t := time.Now().Unix()
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%d.%s", t, body)
	return fmt.Sprintf("t=%d,v1=%s", t, hex.EncodeToString(mac.Sum(nil)))
}

// figures prints each function's cold start (process start to its first
// answer, and to the first 200 the front passed on) and memory.
func (r *rehearsal) figures() {
	w := tabwriter.NewWriter(r.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "function\tentry point\tcold start (to listening)\tfirst 200\tRSS\tpeak RSS\trequests\t")
	for _, s := range r.front.services {
		first := "-"
		if d := s.first200.Load(); d > 0 {
			first = time.Duration(d).Round(time.Millisecond).String()
		}
		rss, peak := procMem(s.pid)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", s.Name, s.Entry, s.ready.Round(time.Millisecond), first, rss, peak, s.requests.Load())
	}
	_ = w.Flush()
}

// procMem reads VmRSS and VmHWM of pid.
func procMem(pid int) (rss, peak string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?", "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.Join(strings.Fields(v), " ")
		switch k {
		case "VmRSS":
			rss = v
		case "VmHWM":
			peak = v
		}
	}
	return rss, peak
}
