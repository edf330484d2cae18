package tasks_test

import (
	"testing"

	"github.com/paymeter/paymeter/internal/memstore"
	"github.com/paymeter/paymeter/tasks"
	"github.com/paymeter/paymeter/tasks/taskstest"
)

// The in-memory store has what the chain scenarios and reconcile need.
var (
	_ taskstest.Store     = (*memstore.Store)(nil)
	_ tasks.OverdueFinder = (*memstore.Store)(nil)
)

func TestChain(t *testing.T) {
	taskstest.RunChain(t, func(*testing.T) taskstest.Store { return memstore.New() })
}
