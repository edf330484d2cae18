package main

import (
	"slices"
	"testing"

	"github.com/paymeter/paymeter/functions"
)

// The rehearsal runs every entry point Terraform deploys, as the account
// Terraform gives it, with the secrets Terraform mounts.
func TestDeployedIsWhatTerraformDeploys(t *testing.T) {
	got, err := loadDeployed("../..")
	if err != nil {
		t.Fatal(err)
	}
	var entries []string
	for _, d := range got {
		entries = append(entries, d.entry)
		if d.name == "meter" && (d.account != "paymeter-meter" || len(d.secrets) != 0) {
			t.Errorf("meter runs as %q with secrets %v; want paymeter-meter with none", d.account, d.secrets)
		}
		if d.name == "webhook" && !slices.Contains(d.secrets, "STRIPE_WEBHOOK_SECRET") {
			t.Errorf("webhook mounts %v, no signing secret", d.secrets)
		}
	}
	for _, e := range functions.Table {
		if !slices.Contains(entries, e.Name) {
			t.Errorf("%s is in functions.Table but not rehearsed (terraform/functions.tf: %v)", e.Name, entries)
		}
	}
}
