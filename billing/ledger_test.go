package billing_test

import (
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
)

// Usage keys written for a day read back as that day, for every day of a
// leap year and a common one, at its first and last instant.
func TestUsageKeysReadBackAsTheirDay(t *testing.T) {
	for d := time.Date(2027, 12, 31, 0, 0, 0, 0, time.UTC); d.Year() < 2029 || d.Month() == time.January && d.Day() == 1; d = d.AddDate(0, 0, 1) {
		for _, at := range []time.Time{d, d.Add(24*time.Hour - time.Nanosecond), d.In(time.FixedZone("UTC+14", 14*3600))} {
			month, day := billing.UsageKeys(at)
			got, err := billing.UsageDate(month, day)
			if err != nil || got != billing.Day(at) {
				t.Fatalf("%s: keys %q %q read back as %q, %v; want %s", at, month, day, got, err, billing.Day(at))
			}
		}
	}
}

func TestUsageDate(t *testing.T) {
	tests := []struct {
		month, day string
		want       string // "" for an error
	}{
		{"2026-12", "01", "2026-12-01"},
		{"2026-12", "1", "2026-12-01"}, // written before the day was padded
		{"2026-12", "9", "2026-12-09"},
		{"2026-12", "31", "2026-12-31"},
		{"2028-02", "29", "2028-02-29"},
		{"2027-02", "29", ""},
		{"2026-04", "31", ""},
		{"2026-12", "0", ""},
		{"2026-12", "32", ""},
		{"2026-12", "x", ""},
		{"2026-13", "01", ""},
	}
	for _, tt := range tests {
		got, err := billing.UsageDate(tt.month, tt.day)
		if tt.want == "" {
			if err == nil {
				t.Errorf("UsageDate(%q, %q) = %q, want an error", tt.month, tt.day, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("UsageDate(%q, %q) = %q, %v; want %s", tt.month, tt.day, got, err, tt.want)
		}
	}
}
