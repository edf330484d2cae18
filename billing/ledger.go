package billing

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Ledger entry kinds. Single debits are not entries: they are counted per
// day as usage.
const (
	EntryGrant    = "grant"
	EntryExpiry   = "expiry"
	EntryClawback = "clawback"
	// EntryDebt holds what refunds and disputes took back from a grant
	// beyond what remained of it; EntryDebtPaid what a grant paid of debt.
	EntryDebt     = "debt"
	EntryDebtPaid = "debt_paid"
	// EntryNote changes no credits: it tells the user of something that
	// granted nothing, such as a failed payment.
	EntryNote = "note"
	// EntryNotice changes no credits: a notice (notify.go) went out by email.
	EntryNotice = "notice"
)

// Entry is one line of an account's ledger. Its ID is derived from what it
// records, so writing it twice writes one entry.
type Entry struct {
	ID        string    `firestore:"id" json:"id"`
	Kind      string    `firestore:"kind" json:"kind"`
	Source    string    `firestore:"source" json:"source"`
	Credits   int64     `firestore:"credits" json:"credits"`
	GrantID   string    `firestore:"grantId" json:"grantId"`
	At        time.Time `firestore:"at" json:"at"`
	ExpiresAt time.Time `firestore:"expiresAt,omitempty" json:"expiresAt,omitempty"`
	Note      string    `firestore:"note" json:"note"`
}

// DayUsage is the credits spent on one UTC day, in all and per metered
// route (the route as the operator configured it: /api/meter, an upstream
// prefix such as /v1/, the route an operator passed to /api/verify).
type DayUsage struct {
	Date    string           `json:"date"` // YYYY-MM-DD
	Credits int64            `json:"credits"`
	Routes  map[string]int64 `json:"routes"`
}

// Day is t's UTC date as every reader and writer of usage spells it:
// "2006-01-02".
func Day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// UsageKeys is where the usage of t is counted: the month document
// ("2006-01") and, in it, the day field ("02", zero-padded), both of t's
// UTC date. UsageDate reads them back.
func UsageKeys(t time.Time) (month, day string) {
	t = t.UTC()
	return t.Format("2006-01"), t.Format("02")
}

// MonthUsage is the credits spent in one month (UsageKeys' month), per day
// field and per day field and route.
type MonthUsage struct {
	Month  string                      `firestore:"month"`
	Days   map[string]int64            `firestore:"days"`
	Routes map[string]map[string]int64 `firestore:"routes,omitempty"`
}

// AddDay counts n credits (negative: given back) on day.
func (u *MonthUsage) AddDay(day string, n int64) {
	if u.Days == nil {
		u.Days = map[string]int64{}
	}
	u.Days[day] += n
}

// AddRoute counts n credits on route on day.
func (u *MonthUsage) AddRoute(day, route string, n int64) {
	if u.Routes == nil {
		u.Routes = map[string]map[string]int64{}
	}
	if u.Routes[day] == nil {
		u.Routes[day] = map[string]int64{}
	}
	u.Routes[day][route] += n
}

// UsageDate is the date, as Day spells it, of the day field day in the
// month document month. It also reads the unpadded day fields ("1") that
// were written before UsageKeys padded them. It returns an error for a
// field that names no day of that month.
func UsageDate(month, day string) (string, error) {
	m, err := time.Parse("2006-01", month)
	if err != nil {
		return "", fmt.Errorf("usage month %q: %w", month, err)
	}
	n, err := strconv.Atoi(day)
	if err != nil || n < 1 || n > 31 {
		return "", fmt.Errorf("usage day %q of %s: not a day of the month", day, month)
	}
	d := m.AddDate(0, 0, n-1)
	if d.Month() != m.Month() {
		return "", fmt.Errorf("usage day %q of %s: not a day of the month", day, month)
	}
	return Day(d), nil
}

func sourceWords(source string) string {
	switch source {
	case SourceFree:
		return "Free"
	case SourceSubscription:
		return "Subscription"
	case SourceTopUp:
		return "Top-up"
	case "":
		return "Other"
	default:
		return strings.ToUpper(source[:1]) + source[1:]
	}
}

func reversalWords(r Reversal) string {
	switch {
	case r.Disputed > 0 && r.Refunded > 0:
		return "Taken back: payment refunded and disputed"
	case r.Disputed > 0:
		return "Taken back: payment disputed"
	case r.Refunded >= r.Charged:
		return "Taken back: payment refunded"
	default:
		return fmt.Sprintf("Taken back: %d%% of the payment refunded", r.Refunded*100/r.Charged)
	}
}
