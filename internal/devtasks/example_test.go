package devtasks_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/devtasks"
	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/tasks"
)

// The dev server: a Queue on the dev clock delivers each task to
// the dev server's own mux, through the shared-secret guard.
func ExampleQueue() {
	ctx := context.Background()
	store := mock.NewStore() // the dev server uses the Firestore emulator's store
	free := billing.DefaultCatalog().Free()
	clk := clock.NewDev()
	const secret = "dev-secret" // TASKS_SECRET

	mux := http.NewServeMux()
	queue := devtasks.New(clk, func(ctx context.Context, t billing.GrantTask) error {
		return devtasks.DeliverHTTP(mux, secret)(ctx, t) // mux is complete by the time tasks run
	}, nil)
	mux.Handle("POST /api/tasks/grant", tasks.RequireSecret(secret)(tasks.NewGrantHandler(store, queue, clk, free, nil)))
	mux.Handle("POST /api/tasks/reconcile", tasks.RequireSecret(secret)(tasks.NewReconcileHandler(store, queue, clk, nil)))

	// Sign-up provisions the account and schedules its chain.
	a, _, _ := store.Provision(ctx, billing.Identity{UID: "ada"}, clk.Now())
	next, _ := a.NextGrant()
	_ = queue.ScheduleGrant(ctx, next)

	// POST /dev/clock/advance {"seconds": 604800}
	n, _ := queue.Advance(ctx, billing.Week+time.Minute)
	a, _ = store.Account(ctx, "ada")
	fmt.Println("delivered", n, "credits", a.Balance(clk.Now()), "pending", queue.Len())
	// Output: delivered 1 credits 50 pending 1
}
