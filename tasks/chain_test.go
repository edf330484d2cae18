package tasks_test

import (
	"testing"

	"github.com/paymeter/paymeter/tasks/taskstest"
)

func TestChain(t *testing.T) {
	taskstest.RunChain(t, func(*testing.T) taskstest.Store { return newMemStore() })
}
