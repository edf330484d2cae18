package mock

import (
	"context"
	"slices"
	"sync"

	"github.com/paymeter/paymeter/billing"
)

var _ billing.Scheduler = (*Scheduler)(nil)

// Scheduler is a billing.Scheduler that records every task it is asked to
// schedule. ScheduleGrantFn, if set, then answers the call (a failing Cloud
// Tasks, say); otherwise every call succeeds. It is safe for concurrent use.
type Scheduler struct {
	ScheduleGrantFn func(ctx context.Context, t billing.GrantTask) error

	mu    sync.Mutex
	tasks []billing.GrantTask
}

// ScheduleGrant records t and returns ScheduleGrantFn's answer, or nil.
func (s *Scheduler) ScheduleGrant(ctx context.Context, t billing.GrantTask) error {
	s.mu.Lock()
	s.tasks = append(s.tasks, t)
	s.mu.Unlock()
	if s.ScheduleGrantFn != nil {
		return s.ScheduleGrantFn(ctx, t)
	}
	return nil
}

// Tasks returns the tasks asked for so far, in order.
func (s *Scheduler) Tasks() []billing.GrantTask {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tasks)
}

// Reset forgets the tasks asked for so far.
func (s *Scheduler) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tasks = nil
}
