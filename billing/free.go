package billing

import (
	"fmt"
	"time"
)

// GrantTask asks for the Free grant of one period of one account. It is the
// body of POST /api/tasks/grant; At is when it is due.
type GrantTask struct {
	UID    string    `json:"uid"`
	Period int64     `json:"period"`
	At     time.Time `json:"-"`
}

// dueSkew is how early a grant task may arrive and still count as due:
// schedulers and clocks differ by a little.
const dueSkew = time.Minute

// FreePeriodAt is the Free period that contains t.
func (a *Account) FreePeriodAt(t time.Time) int64 {
	if t.Before(a.FreeAnchor) {
		return 0
	}
	return int64(t.Sub(a.FreeAnchor) / Week)
}

func (a *Account) periodStart(k int64) time.Time {
	return a.FreeAnchor.Add(time.Duration(k) * Week)
}

// NextGrant returns the task that continues the Free chain, and false while
// the chain is paused by a paid plan or waits for a verified email.
func (a *Account) NextGrant() (GrantTask, bool) {
	if a.Plan != PlanFree || a.FreeAwaitsVerifiedEmail {
		return GrantTask{}, false
	}
	return GrantTask{UID: a.UID, Period: a.NextFreePeriod, At: a.periodStart(a.NextFreePeriod)}, true
}

// GrantFree applies the Free grant that a task for period asks for. It grants
// at most once per period: a task for a period already granted, one that is
// not yet due, or one for an account on a paid plan changes nothing. A late
// task grants the current period (the allowance resets, missed weeks do not
// pile up). An account whose Free chain waits for a verified email gets
// nothing. It reports whether credits were granted.
func (a *Account) GrantFree(period int64, free Plan, now time.Time) bool {
	if a.Plan != PlanFree || a.FreeAwaitsVerifiedEmail || period < a.NextFreePeriod {
		return false
	}
	current := a.FreePeriodAt(now.Add(dueSkew))
	if period > current {
		return false
	}
	a.grantFree(current, free, now)
	return true
}

// StartFree starts the Free chain of an account that waited for a verified
// email: on Free, the first grant now and the next a week on; on a paid
// plan, the chain starts when the account returns to Free. It reports
// whether it started the chain; on any other account it does nothing, so
// however often it is called it grants once.
func (a *Account) StartFree(free Plan, now time.Time) bool {
	if !a.FreeAwaitsVerifiedEmail {
		return false
	}
	now = now.Truncate(time.Microsecond)
	a.FreeAwaitsVerifiedEmail = false
	a.FreeAnchor = now
	a.NextFreePeriod = 0
	if a.Plan == PlanFree {
		a.grantFree(0, free, now)
	}
	return true
}

func (a *Account) grantFree(k int64, free Plan, now time.Time) {
	end := a.periodStart(k + 1)
	a.AddGrant(Grant{ID: fmt.Sprintf("free-%d", k), Source: SourceFree, Amount: free.Credits, Remaining: free.Credits,
		GrantedAt: now, ExpiresAt: end}, now, fmt.Sprintf("Weekly Free credits (week %d)", k+1))
	a.NextFreePeriod = k + 1
	a.NextGrantAt = end
}

// SetPlan moves the account to plan. A paid plan pauses the Free chain; going
// back to Free resumes it from the next period, granting nothing now, so
// however often it is called it grants nothing extra.
func (a *Account) SetPlan(plan string, now time.Time) {
	if plan == a.Plan {
		return
	}
	a.Plan = plan
	if plan != PlanFree || a.FreeAwaitsVerifiedEmail {
		a.NextGrantAt = time.Time{}
		return
	}
	a.NextFreePeriod = max(a.NextFreePeriod, a.FreePeriodAt(now)+1)
	a.NextGrantAt = a.periodStart(a.NextFreePeriod)
}
