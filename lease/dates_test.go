package lease_test

import (
	"context"
	"crypto/rand"
	"sort"
	"testing"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/lease"
)

// walkStore is what the date walk needs of a store: store.Store and
// mock.Store both have it.
type walkStore interface {
	lease.Store
	billing.Meter
	billing.History
	accountStore
}

// walkDays returns every day from first to last, inclusive, at a time of
// day that cycles through the first and last instants of the day and noon.
func walkDays(first, last time.Time) []time.Time {
	offsets := []time.Duration{0, 12 * time.Hour, 24*time.Hour - time.Nanosecond}
	var out []time.Time
	for i, d := 0, first; !d.After(last); i, d = i+1, d.AddDate(0, 0, 1) {
		out = append(out, d.Add(offsets[i%len(offsets)]))
	}
	return out
}

// walkUsage spends credits on each of days, in txn mode (the store's own
// DebitKey) and in lease mode (a lease manager on the store), and after
// each day reads the last 30 days' usage as GET /api/usage does: the day
// just used must show exactly what was spent on it, and every earlier day
// of the window what was spent then.
func walkUsage(t *testing.T, st walkStore, days []time.Time) {
	t.Helper()
	ctx := context.Background()
	clock := clock.NewFixed(days[0])
	// Each day gets its own meter, closed once the day's call is answered:
	// in lease mode that returns the day's lease before the next day takes
	// one, so that the walk does not wait on two transactions contending
	// for the account (the emulator stalls them for seconds).
	modes := []struct {
		name string
		day  func() (billing.Meter, func())
	}{
		{"txn", func() (billing.Meter, func()) { return st, func() {} }},
		{"lease", func() (billing.Meter, func()) {
			m := lease.New(st, clock, lease.Config{Linger: -1}, nil)
			return m, func() { closeAll(t, m) }
		}},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			uid := "walker-" + mode.name
			clock.Set(days[0])
			hash := walkAccount(t, st, uid, days[0])
			spent := map[string]int64{}
			for i, day := range days {
				clock.Set(day)
				cost := int64(i%5 + 1)
				meter, done := mode.day()
				_, err := meter.DebitKey(ctx, hash, cost, day)
				done()
				if err != nil {
					t.Fatalf("%s: debit: %v", day, err)
				}
				spent[billing.Day(day)] += cost
				got, err := st.Usage(ctx, uid, day.AddDate(0, 0, -29), day)
				if err != nil {
					t.Fatalf("%s: usage: %v", day, err)
				}
				if len(got) != 30 || got[29].Date != billing.Day(day) {
					t.Fatalf("%s: usage window ends %v, want 30 days ending %s", day, last(got), billing.Day(day))
				}
				for _, u := range got {
					if u.Credits != spent[u.Date] {
						t.Fatalf("on %s the chart shows %d credits on %s, spent %d", billing.Day(day), u.Credits, u.Date, spent[u.Date])
					}
				}
			}
		})
	}
}

func last(us []billing.DayUsage) any {
	if len(us) == 0 {
		return "nothing"
	}
	return us[len(us)-1]
}

// walkAccount provisions uid at now with credits that never run out on the
// walk and returns the hash of a key to it.
func walkAccount(t *testing.T, st walkStore, uid string, now time.Time) string {
	t.Helper()
	ctx := context.Background()
	if _, _, err := st.Provision(ctx, billing.Identity{UID: uid}, now); err != nil {
		t.Fatal(err)
	}
	_, err := st.UpdateAccount(ctx, uid, func(a *billing.Account) error {
		a.AddGrant(billing.Grant{ID: "walk", Source: billing.SourceAdjustment, Amount: 1_000_000, Remaining: 1_000_000}, now, "date walk")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, key, hash, err := billing.NewAPIKey(rand.Reader, uid, "walk", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateKey(ctx, hash, key); err != nil {
		t.Fatal(err)
	}
	return hash
}

var (
	walkFirst = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	walkLast  = time.Date(2028, 12, 31, 0, 0, 0, 0, time.UTC)
)

// Every day of five years, leap days and month and year ends among them,
// is counted on its own date and read back on it.
func TestUsageCountsEveryDayOnItsDate(t *testing.T) {
	days := walkDays(walkFirst, walkLast)
	if len(days) != 1827 {
		t.Fatalf("walk has %d days, want 1827", len(days))
	}
	walkUsage(t, mock.NewStore(), days)
}

// The same on the Firestore store, for 40 days of the walk: the 1st and
// 9th of every month of a year (where a day field of "1" was read back as
// no day at all), leap days and the days around them, month and year ends.
func TestUsageCountsSampledDaysOnFirestore(t *testing.T) {
	var days []time.Time
	for m := time.January; m <= time.December; m++ {
		days = append(days, time.Date(2026, m, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, m, 9, 0, 0, 0, 0, time.UTC))
	}
	for _, d := range []string{
		"2024-02-28", "2024-02-29", "2024-03-01", "2024-12-31", "2025-01-01", "2025-02-28", "2025-03-01",
		"2025-12-31", "2026-04-30", "2026-12-31", "2027-01-01", "2027-02-28", "2027-12-31", "2028-02-28",
		"2028-02-29", "2028-12-31",
	} {
		day, err := time.Parse(time.DateOnly, d)
		if err != nil {
			t.Fatal(err)
		}
		days = append(days, day)
	}
	sort.Slice(days, func(i, j int) bool { return days[i].Before(days[j]) })
	if len(days) != 40 {
		t.Fatalf("sample has %d days, want 40", len(days))
	}
	offsets := []time.Duration{0, 12 * time.Hour, 24*time.Hour - time.Nanosecond}
	for i := range days {
		days[i] = days[i].Add(offsets[i%len(offsets)])
	}
	walkUsage(t, newStore(t), days)
}
