package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/paymeter/paymeter/internal/emulator"
	"github.com/paymeter/paymeter/payments/stripemocktest"
)

func TestUsage(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run(context.Background(), nil, func(string) string { return "" }, &out, &errs); code != 2 || !strings.Contains(errs.String(), "usage") {
		t.Errorf("no command: exit %d, %q", code, errs.String())
	}
	if code := run(context.Background(), []string{"sync"}, func(string) string { return "" }, &out, &errs); code != 1 ||
		!strings.Contains(errs.String(), "STRIPE_SECRET_KEY") {
		t.Errorf("no key: exit %d, %q", code, errs.String())
	}
}

// TestSyncAgainstStripeMockAndFirestore: stripe-mock accepts every request
// of a sync; Firestore ends with the catalog, and a second run writes
// nothing there (Stripe's side of "twice changes nothing" is tested in
// payments on a stateful fake: stripe-mock keeps no state).
func TestSyncAgainstStripeMockAndFirestore(t *testing.T) {
	emulator.Firestore(t)
	mock := stripemocktest.Start(t)
	project := fmt.Sprintf("demo-plans-%d", time.Now().UnixNano())
	env := map[string]string{"STRIPE_SECRET_KEY": "sk_test_123", "GOOGLE_CLOUD_PROJECT": project}
	getenv := func(k string) string { return env[k] }
	ctx := context.Background()
	sync := func(args ...string) string {
		t.Helper()
		var out, errs bytes.Buffer
		if code := run(ctx, append([]string{"sync", "-stripe-api", mock}, args...), getenv, &out, &errs); code != 0 {
			t.Fatalf("plans sync %v: exit %d\n%s%s", args, code, out.String(), errs.String())
		}
		return out.String()
	}

	dry := sync("-dry-run")
	for _, want := range []string{"stripe: would create price Basic_monthly_price: 500 gbp a month",
		"firestore: would write plans/Free, plans/Basic, plans/Power"} {
		if !strings.Contains(dry, want) {
			t.Errorf("dry run lacks %q:\n%s", want, dry)
		}
	}
	client, err := firestore.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if docs, _ := client.Collection("plans").Documents(ctx).GetAll(); len(docs) != 0 {
		t.Fatalf("dry run wrote %d plans", len(docs))
	}

	if first := sync(); !strings.Contains(first, "firestore: write plans/Free, plans/Basic, plans/Power") {
		t.Errorf("first sync:\n%s", first)
	}
	if second := sync(); !strings.Contains(second, "firestore: up to date") {
		t.Errorf("second sync changed Firestore:\n%s", second)
	}
	snap, err := client.Collection("plans").Doc("Power").Get(ctx)
	if err != nil || snap.Data()["credits"] != int64(100000) {
		t.Errorf("plans/Power: %v %v", snap.Data(), err)
	}
}
