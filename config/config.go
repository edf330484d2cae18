// Package config reads Paymeter's settings from the environment once, at
// start-up, into one validated struct. Nothing below it calls os.Getenv.
package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DevWebhookSecret signs the offline Stripe stand-in's events when no
// STRIPE_WEBHOOK_SECRET is set. It is public on purpose: it only ever guards
// a local dev server.
const DevWebhookSecret = "whsec_paymeter_local_development_only"

// Config is every setting, with the environment variable that sets it.
type Config struct {
	ProjectID             string           // GOOGLE_CLOUD_PROJECT (default demo-paymeter)
	PublicURL             string           // PUBLIC_URL: the site origin, for checkout return URLs (default http://localhost:PORT)
	CORSOrigins           []string         // CORS_ORIGINS: comma-separated origins allowed cross-origin (default none: same origin only)
	MeterCosts            map[string]int64 // METER_COSTS: "/api/meter=1,/api/search=5" (default /api/meter=1)
	StripeSecretKey       string           // STRIPE_SECRET_KEY (none: the dev server uses the offline stand-in)
	StripeWebhookSecret   string           // STRIPE_WEBHOOK_SECRET (dev default DevWebhookSecret)
	TasksQueue            string           // TASKS_QUEUE: projects/P/locations/L/queues/Q
	TasksGrantURL         string           // TASKS_GRANT_URL: the TaskGrant function's URL
	TasksServiceAccount   string           // TASKS_SERVICE_ACCOUNT: the email Cloud Tasks signs OIDC tokens as
	TasksAudience         string           // TASKS_AUDIENCE: the audience of those tokens (default TASKS_GRANT_URL)
	TasksReconcileURL     string           // TASKS_RECONCILE_URL: the TaskReconcile function's URL, the audience of Cloud Scheduler's tokens
	TasksSecret           string           // TASKS_SECRET: local shared secret for task calls (dev only)
	LogFormat             string           // LOG_FORMAT: json or text (default json; the dev server uses text)
	Port                  string           // PORT (default 8000)
	MaxBodyBytes          int64            // MAX_BODY_BYTES: request body cap (default 65536)
	MeterMode             string           // METER_MODE: lease (credit leases, one journal write per flush) or txn (a transaction per metered call) (default lease)
	LeaseTTL              time.Duration    // LEASE_TTL: a credit lease's lifetime, the longest a crashed instance strands credits (default 30s)
	LeaseIdle             time.Duration    // LEASE_IDLE: a lease unused this long goes back at the instance's next call (default 5m)
	LeaseMaxBlock         int64            // LEASE_MAX_BLOCK: the most credits one lease takes (default 1000)
	KeyCacheTTL           time.Duration    // KEY_CACHE_TTL: lease mode's key cache, the revocation bound when the revocation listener is down (default 60s)
	TasksNotifyURL        string           // TASKS_NOTIFY_URL: the TaskNotify function's URL, where notice tasks go (none: notices wait in the outbox)
	TasksNotifyQueue      string           // TASKS_NOTIFY_QUEUE: the queue of notice tasks (default TASKS_QUEUE)
	SMTPURL               string           // SMTP_URL: smtp://user:password@host:port or smtps://... (none: no emails)
	MailFrom              string           // MAIL_FROM: the notices' sender (default "Paymeter <noreply@localhost>")
	OperatorWebhookURL    string           // OPERATOR_WEBHOOK_URL: where the operator's signed events go (none: no events)
	OperatorWebhookSecret string           // OPERATOR_WEBHOOK_SECRET: the events' signing secret (required with the URL)
	// METER_UPSTREAMS: "/v1/=https://search-abc-uc.a.run.app,/v2/translate=http://127.0.0.1:9100":
	// path prefixes metered and forwarded to the operator's services.
	Upstreams []Upstream
	// METER_UPSTREAM_TIMEOUT: the longest an upstream may take to answer (default 30s).
	UpstreamTimeout time.Duration
	// METER_CHARGE_ON: "2xx" charges only 2xx answers; "non5xx" (default) any answer below 500.
	ChargeOn string
	// PAYMETER_OPERATOR_SECRET: the operator API's bearer secret (none: those routes answer 404).
	OperatorSecret string
	// REQUIRE_VERIFIED_EMAIL: an account whose email is not verified gets no
	// Free credits until it is (default false; the Terraform deploy sets true).
	RequireVerifiedEmail bool
}

// Load reads the configuration from getenv (os.Getenv in production) and
// validates it. It returns an error naming the first bad setting.
func Load(getenv func(string) string) (Config, error) {
	get := func(k, def string) string {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
		return def
	}
	c := Config{
		ProjectID:             get("GOOGLE_CLOUD_PROJECT", "demo-paymeter"),
		StripeSecretKey:       get("STRIPE_SECRET_KEY", ""),
		StripeWebhookSecret:   get("STRIPE_WEBHOOK_SECRET", ""),
		TasksQueue:            get("TASKS_QUEUE", ""),
		TasksGrantURL:         get("TASKS_GRANT_URL", ""),
		TasksServiceAccount:   get("TASKS_SERVICE_ACCOUNT", ""),
		TasksReconcileURL:     get("TASKS_RECONCILE_URL", ""),
		TasksSecret:           get("TASKS_SECRET", ""),
		LogFormat:             get("LOG_FORMAT", "json"),
		Port:                  get("PORT", "8000"),
		TasksNotifyURL:        get("TASKS_NOTIFY_URL", ""),
		SMTPURL:               get("SMTP_URL", ""),
		MailFrom:              get("MAIL_FROM", "Paymeter <noreply@localhost>"),
		OperatorWebhookURL:    get("OPERATOR_WEBHOOK_URL", ""),
		OperatorWebhookSecret: get("OPERATOR_WEBHOOK_SECRET", ""),
	}
	c.TasksNotifyQueue = get("TASKS_NOTIFY_QUEUE", c.TasksQueue)
	if c.SMTPURL != "" {
		if u, err := url.Parse(c.SMTPURL); err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Host == "" {
			return Config{}, fmt.Errorf("SMTP_URL must be smtp://[user:password@]host[:port] or smtps://...")
		}
	}
	if c.OperatorWebhookURL != "" {
		if u, err := url.Parse(c.OperatorWebhookURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return Config{}, fmt.Errorf("OPERATOR_WEBHOOK_URL must be an absolute http(s) URL")
		}
		if c.OperatorWebhookSecret == "" {
			return Config{}, fmt.Errorf("OPERATOR_WEBHOOK_SECRET must be set with OPERATOR_WEBHOOK_URL")
		}
	}
	c.TasksAudience = get("TASKS_AUDIENCE", c.TasksGrantURL)
	c.OperatorSecret = get("PAYMETER_OPERATOR_SECRET", "")
	if c.OperatorSecret != "" && len(c.OperatorSecret) < 16 {
		return Config{}, fmt.Errorf("PAYMETER_OPERATOR_SECRET must be at least 16 characters")
	}
	ups, err := parseUpstreams(get("METER_UPSTREAMS", ""))
	if err != nil {
		return Config{}, err
	}
	c.Upstreams = ups
	c.ChargeOn = get("METER_CHARGE_ON", "non5xx")
	if c.ChargeOn != "2xx" && c.ChargeOn != "non5xx" {
		return Config{}, fmt.Errorf("METER_CHARGE_ON must be 2xx or non5xx")
	}
	c.PublicURL = strings.TrimRight(get("PUBLIC_URL", "http://localhost:"+c.Port), "/")
	if u, err := url.Parse(c.PublicURL); err != nil || u.Scheme == "" || u.Host == "" {
		return Config{}, fmt.Errorf("PUBLIC_URL %q is not an absolute URL", c.PublicURL)
	}
	for _, o := range strings.Split(get("CORS_ORIGINS", ""), ",") {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o == "" {
			continue
		}
		if o == "*" {
			return Config{}, fmt.Errorf("CORS_ORIGINS: list origins, not *")
		}
		c.CORSOrigins = append(c.CORSOrigins, o)
	}
	costs, err := parseCosts(get("METER_COSTS", "/api/meter=1"))
	if err != nil {
		return Config{}, err
	}
	c.MeterCosts = costs
	n, err := strconv.ParseInt(get("MAX_BODY_BYTES", "65536"), 10, 64)
	if err != nil || n < 1024 {
		return Config{}, fmt.Errorf("MAX_BODY_BYTES must be an integer of at least 1024")
	}
	c.MaxBodyBytes = n
	c.MeterMode = get("METER_MODE", "lease")
	if c.MeterMode != "txn" && c.MeterMode != "lease" {
		return Config{}, fmt.Errorf("METER_MODE must be txn or lease")
	}
	var errs []error
	c.LeaseTTL = duration(&errs, "LEASE_TTL", get("LEASE_TTL", "30s"), "30s", time.Second)
	c.LeaseIdle = duration(&errs, "LEASE_IDLE", get("LEASE_IDLE", "5m"), "5m", 100*time.Millisecond)
	c.KeyCacheTTL = duration(&errs, "KEY_CACHE_TTL", get("KEY_CACHE_TTL", "60s"), "60s", 100*time.Millisecond)
	c.UpstreamTimeout = duration(&errs, "METER_UPSTREAM_TIMEOUT", get("METER_UPSTREAM_TIMEOUT", "30s"), "30s", 10*time.Millisecond)
	if len(errs) > 0 {
		return Config{}, errs[0]
	}
	block, err := strconv.ParseInt(get("LEASE_MAX_BLOCK", "1000"), 10, 64)
	if err != nil || block < 10 || block > 1_000_000 {
		return Config{}, fmt.Errorf("LEASE_MAX_BLOCK must be an integer from 10 to 1000000")
	}
	c.LeaseMaxBlock = block
	verified, err := strconv.ParseBool(get("REQUIRE_VERIFIED_EMAIL", "false"))
	if err != nil {
		return Config{}, fmt.Errorf("REQUIRE_VERIFIED_EMAIL must be true or false")
	}
	c.RequireVerifiedEmail = verified
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return Config{}, fmt.Errorf("LOG_FORMAT must be json or text")
	}
	return c, nil
}

// duration parses v, the value of env, as a duration from least to an hour,
// appending an error naming env to errs if it is not one.
func duration(errs *[]error, env, v, example string, least time.Duration) time.Duration {
	d, err := time.ParseDuration(v)
	if err != nil || d < least || d > time.Hour {
		*errs = append(*errs, fmt.Errorf("%s must be a duration from %s to 1h, like %s", env, least, example))
	}
	return d
}

func parseCosts(s string) (map[string]int64, error) {
	costs := map[string]int64{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		route, cost, ok := strings.Cut(part, "=")
		n, err := strconv.ParseInt(strings.TrimSpace(cost), 10, 64)
		route = strings.TrimSpace(route)
		if !ok || err != nil || n < 1 || n > 1_000_000 || !strings.HasPrefix(route, "/") {
			return nil, fmt.Errorf("METER_COSTS: %q is not /route=cost with a cost from 1 to 1000000", part)
		}
		costs[route] = n
	}
	if len(costs) == 0 {
		return nil, fmt.Errorf("METER_COSTS names no route")
	}
	return costs, nil
}

// Upstream is a metered path prefix and the service behind it.
type Upstream struct {
	Prefix string
	URL    *url.URL
}

// parseUpstreams reads METER_UPSTREAMS: comma-separated prefix=URL pairs,
// each prefix starting with / and outside /api/, each URL absolute http(s)
// with no query.
func parseUpstreams(s string) ([]Upstream, error) {
	var out []Upstream
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		prefix, raw, ok := strings.Cut(part, "=")
		prefix, raw = strings.TrimSpace(prefix), strings.TrimSpace(raw)
		u, err := url.Parse(raw)
		if !ok || err != nil || !strings.HasPrefix(prefix, "/") || strings.HasPrefix(prefix, "/api/") || prefix == "/api" ||
			prefix == "/" || strings.HasPrefix(prefix, "/dev/") || (u.Scheme != "http" && u.Scheme != "https") ||
			u.Host == "" || u.RawQuery != "" || u.User != nil || seen[prefix] {
			return nil, fmt.Errorf("METER_UPSTREAMS: %q is not /prefix=http(s)://host[/path], once per prefix, outside /api/ and /dev/", part)
		}
		seen[prefix] = true
		out = append(out, Upstream{Prefix: prefix, URL: u})
	}
	return out, nil
}
