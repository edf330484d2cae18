// Command terraform-provider-google is a schema-only stand-in for the Google
// Terraform providers, for checking configuration offline.
//
// It answers Terraform with the real provider schemas that
// `terraform providers schema -json` printed (one gzipped file per provider,
// kept outside the repository), so that `terraform validate` and
// `terraform test` with mock_provider check argument names, types and block
// nesting. It creates, reads and deletes nothing: every call that would reach
// Google Cloud fails with an error.
//
// One binary serves both providers. It takes the provider type from its own
// file name (terraform-provider-google, terraform-provider-google-beta) or from
// PAYMETER_TF_PROVIDER, and finds the schema file <type>-<version>.schema.json.gz
// in PAYMETER_TF_SCHEMA_DIR or, failing that, in the first shared/terraform
// folder above the working directory or the executable. Install it with the
// dev_overrides block of a Terraform CLI configuration file.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/terraform-plugin-go/tfprotov5"
	"github.com/hashicorp/terraform-plugin-go/tfprotov5/tf5server"
)

func main() {
	providerType := providerTypeFromName(os.Getenv("PAYMETER_TF_PROVIDER"), os.Args[0])
	if providerType == "" {
		fmt.Fprintln(os.Stderr, "tfprovider: cannot tell the provider type: name the binary terraform-provider-<type> or set PAYMETER_TF_PROVIDER")
		os.Exit(2)
	}
	srv := newServer(providerType, func() (string, error) { return findSchemaFile(providerType) })
	address := "registry.terraform.io/hashicorp/" + providerType
	if err := tf5server.Serve(address, func() tfprotov5.ProviderServer { return srv }); err != nil {
		fmt.Fprintln(os.Stderr, "tfprovider:", err)
		os.Exit(1)
	}
}

// providerTypeFromName returns override if set, else the type in a binary
// name such as terraform-provider-google-beta or terraform-provider-google_v7.45.0.
func providerTypeFromName(override, executable string) string {
	if override != "" {
		return override
	}
	name := strings.TrimSuffix(filepath.Base(executable), ".exe")
	name, ok := strings.CutPrefix(name, "terraform-provider-")
	if !ok {
		return ""
	}
	name, _, _ = strings.Cut(name, "_")
	return name
}
