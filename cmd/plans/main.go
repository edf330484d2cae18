// Command plans syncs the plans catalog (billing/plans.json, or -plans FILE)
// to Stripe products and prices and to Firestore plans/{name}:
//
//	go run ./cmd/plans sync [-dry-run] [-plans FILE]
//
// Each paid plan gets a product and one price per kind with the lookup key
// "<Plan>_<kind>_price"; a changed amount makes a new price that takes the
// lookup key over and deactivates the old one. It is idempotent: a second
// run prints "up to date" and changes nothing. With -dry-run it prints what
// it would change and changes nothing.
//
// Settings come from the environment, as for the functions:
// STRIPE_SECRET_KEY, GOOGLE_CLOUD_PROJECT and FIRESTORE_EMULATOR_HOST.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paymeter/paymeter/billing"
	"github.com/paymeter/paymeter/config"
	"github.com/paymeter/paymeter/payments"
	"github.com/paymeter/paymeter/store"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage: plans sync [-dry-run] [-plans FILE]

Syncs the plans catalog to Stripe (products, prices by lookup key) and to
Firestore plans/{name}. Needs STRIPE_SECRET_KEY; GOOGLE_CLOUD_PROJECT names
the Firestore project (FIRESTORE_EMULATOR_HOST for the emulator).
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "sync" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("plans sync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dryRun := fs.Bool("dry-run", false, "print what would change, change nothing")
	file := fs.String("plans", "", "plans file (default: the built-in billing/plans.json)")
	stripeAPI := fs.String("stripe-api", "", "Stripe API origin (default: Stripe itself; stripe-mock in tests)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if err := sync(ctx, getenv, *file, *stripeAPI, *dryRun, stdout); err != nil {
		fmt.Fprintln(stderr, "plans:", err)
		return 1
	}
	return 0
}

func sync(ctx context.Context, getenv func(string) string, file, stripeAPI string, dryRun bool, out io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	if cfg.StripeSecretKey == "" {
		return errors.New("STRIPE_SECRET_KEY is not set")
	}
	catalog := billing.DefaultCatalog()
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if catalog, err = billing.ParseCatalog(data); err != nil {
			return err
		}
	}
	would := ""
	if dryRun {
		would = "would "
	}

	stripe := payments.New(payments.Config{SecretKey: cfg.StripeSecretKey, PublicURL: cfg.PublicURL, BackendURL: stripeAPI})
	changes, err := stripe.SyncPlans(ctx, catalog, dryRun)
	for _, c := range changes {
		fmt.Fprintf(out, "stripe: %s%s\n", would, c)
	}
	if err != nil {
		return err
	}
	if len(changes) == 0 {
		fmt.Fprintln(out, "stripe: up to date")
	}

	client, err := firestore.NewClient(ctx, cfg.ProjectID)
	if err != nil {
		return fmt.Errorf("firestore client: %w", err)
	}
	defer client.Close()
	changed, err := changedPlans(ctx, client, catalog)
	if err != nil {
		return err
	}
	if len(changed.Plans) == 0 {
		fmt.Fprintln(out, "firestore: up to date")
		return nil
	}
	var names []string
	for _, p := range changed.Plans {
		names = append(names, "plans/"+p.Name)
	}
	fmt.Fprintf(out, "firestore: %swrite %s\n", would, strings.Join(names, ", "))
	if dryRun {
		return nil
	}
	return store.New(client, catalog.Free()).SavePlans(ctx, changed)
}

// changedPlans returns the plans of c that Firestore does not hold as they are.
func changedPlans(ctx context.Context, client *firestore.Client, c billing.Catalog) (billing.Catalog, error) {
	var changed billing.Catalog
	for _, p := range c.Plans {
		snap, err := client.Collection("plans").Doc(p.Name).Get(ctx)
		if status.Code(err) == codes.NotFound {
			changed.Plans = append(changed.Plans, p)
			continue
		}
		if err != nil {
			return changed, fmt.Errorf("read plans/%s: %w", p.Name, err)
		}
		var have billing.Plan
		if err := snap.DataTo(&have); err != nil || !samePlan(have, p) {
			changed.Plans = append(changed.Plans, p)
		}
	}
	return changed, nil
}

func samePlan(a, b billing.Plan) bool {
	if len(a.Prices) == 0 && len(b.Prices) == 0 {
		a.Prices, b.Prices = nil, nil
	}
	return reflect.DeepEqual(a, b)
}
