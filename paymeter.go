// Package paymeter is the root of the source that Cloud Functions builds: it
// reads the configuration once, wires the adapters and registers every
// entry point (User, Meter, Checkout, Cancel, Portal, Webhook, TaskGrant,
// TaskReconcile) with the Functions Framework. Each deployed function runs
// this init, so it builds its clients once and never per request.
package paymeter

import (
	"context"
	"os"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/paymeter/paymeter/app"
	"github.com/paymeter/paymeter/config"
)

func init() {
	// The buildpack compiles this package into every function, but only a
	// deployed instance (K_SERVICE set by Cloud Run) has its configuration.
	if os.Getenv("K_SERVICE") == "" && os.Getenv("FUNCTION_TARGET") == "" {
		return
	}
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		panic("paymeter: " + err.Error())
	}
	log := app.NewLogger(os.Stdout, cfg.LogFormat)
	fns, err := app.Production(context.Background(), cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		panic("paymeter: " + err.Error())
	}
	for _, f := range fns {
		functions.HTTP(f.Name, f.Handler.ServeHTTP)
	}
}
