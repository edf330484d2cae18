package functions

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/notify"
	"github.com/paymeter/paymeter/tasks"
)

// The Free chain's entry points: Cloud Tasks calls TaskGrant with one
// grant, Cloud Scheduler calls TaskReconcile once a day; both only behind
// TaskGuard.

func (s *Server) grantHandler() http.Handler {
	h := tasks.NewGrantHandler(s.Tasks, s.Scheduler, s.Clock, s.Catalog.Free(), s.Log)
	return s.wrap(s.TaskGuard(s.Config.TasksAudience)(h))
}

func (s *Server) reconcileHandler() http.Handler {
	h := tasks.NewReconcileHandler(s.Tasks, s.Scheduler, s.Clock, s.Log)
	return s.wrap(s.TaskGuard(s.Config.TasksReconcileURL)(s.resendNotices(h)))
}

// noticeSweepAge is how long a notice stays pending before the daily sweep
// schedules its delivery again (its first task was lost, or still retries:
// the task's name de-duplicates), and noticeSweepPage how many it takes a day.
const (
	noticeSweepAge  = 15 * time.Minute
	noticeSweepPage = 1000
)

// resendNotices runs the notice sweep before next, the Free chain's: a
// failure is logged and does not stop the chain's sweep.
func (s *Server) resendNotices(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && s.Notices != nil && s.Outbox != nil {
			n, err := notify.Resend(r.Context(), s.Outbox, s.Notices, s.Clock.Now().Add(-noticeSweepAge), noticeSweepPage)
			if err != nil {
				s.Log.ErrorContext(r.Context(), "notice sweep incomplete", "resent", n, "err", err)
			} else if n > 0 {
				s.Log.InfoContext(r.Context(), "notice sweep", "resent", n)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// scheduleFree schedules the next Free grant of a Free account. Scheduling
// the same period twice makes one task, so calling it again is harmless.
func (s *Server) scheduleFree(ctx context.Context, a *billing.Account) error {
	t, ok := a.NextGrant()
	if !ok {
		return nil
	}
	if err := s.Scheduler.ScheduleGrant(ctx, t); err != nil {
		return fmt.Errorf("schedule Free grant %s/%d: %w: %w", t.UID, t.Period, billing.ErrUnavailable, err)
	}
	return nil
}
