package config_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/paymeter/paymeter/config"
)

// env is a getenv over a map.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadDefaults(t *testing.T) {
	c, err := config.Load(env(nil))
	if err != nil {
		t.Fatalf("no settings: %v", err)
	}
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"GOOGLE_CLOUD_PROJECT", c.ProjectID, "demo-paymeter"},
		{"PORT", c.Port, "8000"},
		{"PUBLIC_URL", c.PublicURL, "http://localhost:8000"},
		{"METER_MODE", c.MeterMode, "lease"},
		{"MAX_BODY_BYTES", c.MaxBodyBytes, int64(65536)},
		{"LEASE_TTL", c.LeaseTTL, 30 * time.Second},
		{"LEASE_IDLE", c.LeaseIdle, 5 * time.Minute},
		{"KEY_CACHE_TTL", c.KeyCacheTTL, time.Minute},
		{"LEASE_MAX_BLOCK", c.LeaseMaxBlock, int64(1000)},
		{"LOG_FORMAT", c.LogFormat, "json"},
		{"REQUIRE_VERIFIED_EMAIL", c.RequireVerifiedEmail, false},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if want := map[string]int64{"/api/meter": 1}; !maps.Equal(c.MeterCosts, want) {
		t.Errorf("METER_COSTS = %v, want %v", c.MeterCosts, want)
	}
}

func TestLoadReadsSettings(t *testing.T) {
	c, err := config.Load(env(map[string]string{
		"PORT":            "9000",
		"PUBLIC_URL":      "https://app.example.com/",
		"CORS_ORIGINS":    " https://a.example.com/ ,, https://b.example.com",
		"METER_COSTS":     "/api/meter=1, /api/search = 5",
		"TASKS_GRANT_URL": "https://grant.example.com",
		"METER_MODE":      "lease",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "https://app.example.com" {
		t.Errorf("PUBLIC_URL = %q, want it without the trailing slash", c.PublicURL)
	}
	if want := []string{"https://a.example.com", "https://b.example.com"}; !slices.Equal(c.CORSOrigins, want) {
		t.Errorf("CORS_ORIGINS = %q, want %q", c.CORSOrigins, want)
	}
	if want := map[string]int64{"/api/meter": 1, "/api/search": 5}; !maps.Equal(c.MeterCosts, want) {
		t.Errorf("METER_COSTS = %v, want %v", c.MeterCosts, want)
	}
	if c.TasksAudience != "https://grant.example.com" {
		t.Errorf("TASKS_AUDIENCE = %q, want TASKS_GRANT_URL's value", c.TasksAudience)
	}
	if c.MeterMode != "lease" {
		t.Errorf("METER_MODE = %q", c.MeterMode)
	}
}

// TestLoadRefuses: every setting Load refuses, with the error that names it.
func TestLoadRefuses(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"PUBLIC_URL": "localhost:8000"}, `PUBLIC_URL "localhost:8000" is not an absolute URL`},
		{map[string]string{"PUBLIC_URL": "/app"}, `PUBLIC_URL "/app" is not an absolute URL`},
		{map[string]string{"CORS_ORIGINS": "https://a.example.com,*"}, "CORS_ORIGINS: list origins, not *"},
		{map[string]string{"METER_COSTS": "/api/meter"}, `METER_COSTS: "/api/meter" is not /route=cost with a cost from 1 to 1000000`},
		{map[string]string{"METER_COSTS": "api/meter=1"}, `METER_COSTS: "api/meter=1" is not /route=cost with a cost from 1 to 1000000`},
		{map[string]string{"METER_COSTS": "/api/meter=0"}, `METER_COSTS: "/api/meter=0" is not /route=cost with a cost from 1 to 1000000`},
		{map[string]string{"METER_COSTS": "/api/meter=1000001"}, `METER_COSTS: "/api/meter=1000001" is not /route=cost with a cost from 1 to 1000000`},
		{map[string]string{"METER_COSTS": ", ,"}, "METER_COSTS names no route"},
		{map[string]string{"MAX_BODY_BYTES": "1023"}, "MAX_BODY_BYTES must be an integer of at least 1024"},
		{map[string]string{"MAX_BODY_BYTES": "64k"}, "MAX_BODY_BYTES must be an integer of at least 1024"},
		{map[string]string{"METER_MODE": "batch"}, "METER_MODE must be txn or lease"},
		{map[string]string{"LEASE_TTL": "30"}, "LEASE_TTL must be a duration from 1s to 1h, like 30s"},
		{map[string]string{"LEASE_TTL": "2h"}, "LEASE_TTL must be a duration from 1s to 1h, like 30s"},
		{map[string]string{"LEASE_IDLE": "10ms"}, "LEASE_IDLE must be a duration from 100ms to 1h, like 5m"},
		{map[string]string{"KEY_CACHE_TTL": "forever"}, "KEY_CACHE_TTL must be a duration from 100ms to 1h, like 60s"},
		{map[string]string{"LEASE_MAX_BLOCK": "9"}, "LEASE_MAX_BLOCK must be an integer from 10 to 1000000"},
		{map[string]string{"LEASE_MAX_BLOCK": "1000001"}, "LEASE_MAX_BLOCK must be an integer from 10 to 1000000"},
		{map[string]string{"REQUIRE_VERIFIED_EMAIL": "yes please"}, "REQUIRE_VERIFIED_EMAIL must be true or false"},
		{map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT must be json or text"},
	} {
		_, err := config.Load(env(tt.env))
		if err == nil || err.Error() != tt.want {
			t.Errorf("%v: error %v, want %q", tt.env, err, tt.want)
		}
	}
}
