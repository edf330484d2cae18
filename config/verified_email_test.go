package config_test

import (
	"testing"

	"github.com/paymeter/paymeter/config"
)

func TestRequireVerifiedEmail(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  bool
		ok    bool
	}{
		{"", false, true}, // make dev: off
		{"true", true, true},
		{"1", true, true},
		{"false", false, true},
		{"yes please", false, false},
	} {
		c, err := config.Load(func(k string) string { return map[string]string{"REQUIRE_VERIFIED_EMAIL": tt.value}[k] })
		if (err == nil) != tt.ok || c.RequireVerifiedEmail != tt.want {
			t.Errorf("REQUIRE_VERIFIED_EMAIL=%q: %v, err %v; want %v", tt.value, c.RequireVerifiedEmail, err, tt.want)
		}
	}
}
