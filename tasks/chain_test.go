package tasks_test

import (
	"testing"

	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/tasks"
	"github.com/paymeter/paymeter/tasks/taskstest"
)

// The in-memory store has what the chain scenarios and reconcile need.
var (
	_ taskstest.Store     = (*mock.Store)(nil)
	_ tasks.OverdueFinder = (*mock.Store)(nil)
)

func TestChain(t *testing.T) {
	taskstest.RunChain(t, func(*testing.T) taskstest.Store { return mock.NewStore() })
}
