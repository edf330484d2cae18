package tasks_test

import (
	"context"
	"fmt"

	"google.golang.org/api/idtoken"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/internal/clock"
	"github.com/paymeter/paymeter/internal/mock"
	"github.com/paymeter/paymeter/tasks"
)

// Production: Cloud Tasks calls TaskGrant with an OIDC token for the tasks
// service account.
func ExampleRequireOIDC() {
	ctx := context.Background()
	store := mock.NewStore() // the Firestore store
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
