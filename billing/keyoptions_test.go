package billing_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
)

func ptr[T any](v T) *T { return &v }

var routes = []string{"/api/meter", "/api/search", "/v1/"}

func TestKeyOptionsRefuseBadInputAndChangeNothing(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		opts billing.KeyOptions
	}{
		{"past expiry", billing.KeyOptions{ExpiresAt: ptr(now.Add(-time.Second))}},
		{"expiry now", billing.KeyOptions{ExpiresAt: ptr(now)}},
		{"absurd expiry", billing.KeyOptions{ExpiresAt: ptr(now.AddDate(11, 0, 0))}},
		{"unknown scope", billing.KeyOptions{Scopes: ptr([]string{"/api/nothing"})}},
		{"scope not a path", billing.KeyOptions{Scopes: ptr([]string{"api/meter"})}},
		{"scope on a segment's half", billing.KeyOptions{Scopes: ptr([]string{"/api/met"})}},
		{"too many scopes", billing.KeyOptions{Scopes: ptr(strings.Split(strings.Repeat("/api/meter,", 21)[:11*21-1], ","))}},
		{"zero perSecond", billing.KeyOptions{Limits: &billing.LimitsInput{PerSecond: ptr(int64(0))}}},
		{"negative perSecond", billing.KeyOptions{Limits: &billing.LimitsInput{PerSecond: ptr(int64(-1))}}},
		{"absurd perSecond", billing.KeyOptions{Limits: &billing.LimitsInput{PerSecond: ptr(int64(billing.MaxPerSecond + 1))}}},
		{"burst without rate", billing.KeyOptions{Limits: &billing.LimitsInput{Burst: ptr(int64(5))}}},
		{"zero burst", billing.KeyOptions{Limits: &billing.LimitsInput{PerSecond: ptr(int64(1)), Burst: ptr(int64(0))}}},
		{"negative cap", billing.KeyOptions{Limits: &billing.LimitsInput{CreditsPerDay: ptr(int64(-5))}}},
		{"absurd cap", billing.KeyOptions{Limits: &billing.LimitsInput{CreditsPerDay: ptr(int64(billing.MaxCreditsPerDay + 1))}}},
		{"blank name", billing.KeyOptions{Name: ptr("  ")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := billing.APIKey{Name: "ci", Scopes: []string{"/v1/"}}
			before := k
			err := tt.opts.Apply(&k, routes, now)
			if billing.ErrorCode(err) != billing.CodeBadRequest {
				t.Fatalf("Apply = %v, want bad_request", err)
			}
			if k.Name != before.Name || len(k.Scopes) != 1 || k.Limits != before.Limits || !k.ExpiresAt.IsZero() {
				t.Errorf("the key changed: %+v", k)
			}
		})
	}
}

func TestKeyOptionsApply(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	k := billing.APIKey{Name: "ci"}
	err := billing.KeyOptions{Name: ptr(" prod "), ExpiresAt: ptr(now.Add(time.Hour)), Scopes: ptr([]string{"/v1/", "/api/meter", "/v1/"}),
		Limits: &billing.LimitsInput{PerSecond: ptr(int64(2)), CreditsPerDay: ptr(int64(100))}}.Apply(&k, routes, now)
	if err != nil {
		t.Fatal(err)
	}
	want := billing.KeyLimits{PerSecond: 2, Burst: 2, CreditsPerDay: 100}
	if k.Name != "prod" || !k.ExpiresAt.Equal(now.Add(time.Hour)) || len(k.Scopes) != 2 || k.Limits != want {
		t.Errorf("key = %+v", k)
	}
	if err := (billing.KeyOptions{ExpiresAt: ptr(time.Time{}), Limits: &billing.LimitsInput{}}).Apply(&k, routes, now); err != nil {
		t.Fatal(err)
	}
	if !k.ExpiresAt.IsZero() || k.Limits != (billing.KeyLimits{}) {
		t.Errorf("clearing left %+v", k)
	}
}

func TestAdmit(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		key   billing.APIKey
		route string
		code  string
		msg   string
	}{
		{"plain key", billing.APIKey{}, "/api/meter", "", ""},
		{"revoked", billing.APIKey{Revoked: true}, "/api/meter", billing.CodeInvalidAPIKey, "revoked"},
		{"before expiry", billing.APIKey{ExpiresAt: now.Add(time.Second)}, "/api/meter", "", ""},
		{"at expiry", billing.APIKey{ExpiresAt: now}, "/api/meter", billing.CodeInvalidAPIKey, "expired"},
		{"rolled, grace over", billing.APIKey{ExpiresAt: now.Add(-time.Second), RolledTo: "key_x"}, "/api/meter", billing.CodeInvalidAPIKey, "rolled"},
		{"in scope", billing.APIKey{Scopes: []string{"/v1/"}}, "/v1/search", "", ""},
		{"exact scope", billing.APIKey{Scopes: []string{"/api/meter"}}, "/api/meter", "", ""},
		{"outside scope", billing.APIKey{Scopes: []string{"/v1/"}}, "/api/meter", billing.CodeRouteNotAllowed, "/v1/"},
		{"segment boundary", billing.APIKey{Scopes: []string{"/api/meter"}}, "/api/meterx", billing.CodeRouteNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.key.Admit(tt.route, now)
			if got := billing.ErrorCode(err); got != tt.code {
				t.Fatalf("Admit = %v, want code %q", err, tt.code)
			}
			if !strings.Contains(billing.ErrorMessage(err), tt.msg) && err != nil {
				t.Errorf("message %q does not say %q", billing.ErrorMessage(err), tt.msg)
			}
		})
	}
}

func TestAdmitDay(t *testing.T) {
	l := billing.KeyLimits{CreditsPerDay: 10}
	if err := l.AdmitDay(9, 1); err != nil {
		t.Errorf("9+1 of 10: %v", err)
	}
	if err := l.AdmitDay(9, 2); billing.ErrorCode(err) != billing.CodeKeyLimitReached {
		t.Errorf("9+2 of 10: %v", err)
	}
	if err := (billing.KeyLimits{}).AdmitDay(1e9, 5); err != nil {
		t.Errorf("uncapped: %v", err)
	}
}

func TestRollKeepsNameScopesLimitsAndEndsTheOldKeyAfterGrace(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	_, old, _, err := billing.NewAPIKey(bytes.NewReader(make([]byte, 64)), "u1", "ci", now)
	if err != nil {
		t.Fatal(err)
	}
	old.Scopes, old.Limits = []string{"/v1/"}, billing.KeyLimits{PerSecond: 1, Burst: 1}
	random := bytes.NewReader(bytes.Repeat([]byte{7}, 64))
	secret, next, hash, err := old.Roll(random, time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	if hash != billing.HashKey(secret) || next.ID == old.ID || next.Name != "ci" || next.Scopes[0] != "/v1/" || next.Limits != old.Limits {
		t.Errorf("new key %+v", next)
	}
	if old.RolledTo != next.ID || old.Admit("/v1/x", now.Add(59*time.Second)) != nil || old.Admit("/v1/x", now.Add(time.Minute)) == nil {
		t.Errorf("old key %+v", old)
	}
	if _, _, _, err := old.Roll(random, -time.Second, now); billing.ErrorCode(err) != billing.CodeBadRequest {
		t.Errorf("negative grace: %v", err)
	}
	_, _, _, _ = old.Roll(random, 0, now)
	if !old.Revoked {
		t.Error("a roll with no grace leaves the old key working")
	}
}

func TestBucketLetsBurstThenRate(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	b := billing.Bucket{Rate: 2, Burst: 3}
	for i := range 3 {
		if w := b.Take(now); w != 0 {
			t.Fatalf("call %d of the burst refused, wait %v", i, w)
		}
	}
	if w := b.Take(now); w != 500*time.Millisecond {
		t.Fatalf("past the burst: wait %v, want 500ms", w)
	}
	if w := b.Take(now.Add(500 * time.Millisecond)); w != 0 {
		t.Fatalf("after the wait: %v", w)
	}
	// Over 10 s, no more than burst + rate × 10 calls.
	b = billing.Bucket{Rate: 2, Burst: 3}
	n := 0
	for ms := 0; ms < 10_000; ms += 10 {
		if b.Take(now.Add(time.Duration(ms)*time.Millisecond)) == 0 {
			n++
		}
	}
	if n > 3+20 {
		t.Errorf("%d calls let through in 10 s, want at most 23", n)
	}
	e := &billing.RateLimitedError{RetryAfter: 200 * time.Millisecond}
	if billing.ErrorCode(e) != billing.CodeRateLimited || e.RetryAfterSeconds() != 1 {
		t.Errorf("error %v, retry %d", e, e.RetryAfterSeconds())
	}
}
