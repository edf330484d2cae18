package tasks_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"google.golang.org/api/idtoken"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/memstore"
	"github.com/paymeter/paymeter/tasks"
)

// The dev server: a Local scheduler on the dev clock delivers each task to
// the dev server's own mux, through the shared-secret guard.
func ExampleLocal() {
	ctx := context.Background()
	store := memstore.New() // the dev server uses the Firestore emulator's store
	free := billing.DefaultCatalog().Free()
	clock := clock.NewDev()
	const secret = "dev-secret" // TASKS_SECRET

	mux := http.NewServeMux()
	local := tasks.NewLocal(clock, func(ctx context.Context, t billing.GrantTask) error {
		return tasks.DeliverHTTP(mux, secret)(ctx, t) // mux is complete by the time tasks run
	}, nil)
	mux.Handle("POST /api/tasks/grant", tasks.RequireSecret(secret)(tasks.NewGrantHandler(store, local, clock, free, nil)))
	mux.Handle("POST /api/tasks/reconcile", tasks.RequireSecret(secret)(tasks.NewReconcileHandler(store, local, clock, nil)))

	// Sign-up provisions the account and schedules its chain.
	a, _, _ := store.Provision(ctx, billing.Identity{UID: "ada"}, clock.Now())
	next, _ := a.NextGrant()
	_ = local.ScheduleGrant(ctx, next)

	// POST /dev/clock/advance {"seconds": 604800}
	n, _ := local.Advance(ctx, billing.Week+time.Minute)
	a, _ = store.Account(ctx, "ada")
	fmt.Println("delivered", n, "credits", a.Balance(clock.Now()), "pending", local.Len())
	// Output: delivered 1 credits 50 pending 1
}

// Production: Cloud Tasks calls TaskGrant with an OIDC token for the tasks
// service account.
func ExampleRequireOIDC() {
	ctx := context.Background()
	store := memstore.New() // the Firestore store
	cfg := tasks.CloudTasksConfig{
		Queue:          "projects/demo-paymeter/locations/europe-west2/queues/free-grants", // TASKS_QUEUE
		GrantURL:       "https://taskgrant-abc123-nw.a.run.app",                            // TASKS_GRANT_URL
		ServiceAccount: "paymeter-tasks@demo-paymeter.iam.gserviceaccount.com",             // TASKS_SERVICE_ACCOUNT
		Audience:       "https://taskgrant-abc123-nw.a.run.app",                            // TASKS_AUDIENCE
	}
	sched, err := tasks.NewCloudTasks(ctx, cfg) // default credentials
	if err != nil {
		fmt.Println(err)
		return
	}
	validator, err := idtoken.NewValidator(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	grant := tasks.NewGrantHandler(store, sched, clock.Real{}, billing.DefaultCatalog().Free(), nil)
	_ = tasks.RequireOIDC(cfg.Audience, cfg.ServiceAccount, validator, nil)(grant) // functions.HTTP("TaskGrant", ....ServeHTTP)
}
