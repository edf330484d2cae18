package functions

import (
	"context"
	"fmt"
	"net/http"

	"github.com/paymeter/paymeter/billing"
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
	return s.wrap(s.TaskGuard(s.Config.TasksReconcileURL)(h))
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
