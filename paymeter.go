// Package paymeter is the root of the source that Cloud Functions builds: it
// reads the configuration once and registers the entry point the instance
// runs (FUNCTION_TARGET), from functions.Table, with the Functions
// Framework. Each deployed function runs this init, so it builds its
// clients once, never per request, and only those its entry point uses.
package paymeter

import (
	"context"
	"os"

	framework "github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/functions"
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
	log := functions.NewLogger(os.Stdout, cfg.LogFormat)
	fns, err := functions.Production(context.Background(), cfg, log, os.Getenv("FUNCTION_TARGET"))
	if err != nil {
		log.Error("start", "err", err)
		panic("paymeter: " + err.Error())
	}
	for _, f := range fns {
		framework.HTTP(f.Name, f.Handler.ServeHTTP)
	}
}
