package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov5"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

func TestProviderTypeFromName(t *testing.T) {
	tests := []struct{ override, exe, want string }{
		{"", "/cache/terraform-provider-google", "google"},
		{"", "terraform-provider-google-beta", "google-beta"},
		{"", "/x/terraform-provider-google_v7.45.0_x5", "google"},
		{"google-beta", "/x/anything", "google-beta"},
		{"", "/x/tfprovider", ""},
	}
	for _, tt := range tests {
		if got := providerTypeFromName(tt.override, tt.exe); got != tt.want {
			t.Errorf("providerTypeFromName(%q, %q) = %q, want %q", tt.override, tt.exe, got, tt.want)
		}
	}
}

func TestSchemaFileInPicksTheProviderAndTheNewestVersion(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{
		"google-7.9.0.schema.json.gz", "google-7.45.0.schema.json.gz",
		"google-beta-7.99.0.schema.json.gz", "README.md",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct{ providerType, want string }{
		{"google", "google-7.45.0.schema.json.gz"},
		{"google-beta", "google-beta-7.99.0.schema.json.gz"},
	}
	for _, tt := range tests {
		got, err := schemaFileIn(dir, tt.providerType)
		if err != nil || filepath.Base(got) != tt.want {
			t.Errorf("schemaFileIn(%s) = %q, %v; want %s", tt.providerType, got, err, tt.want)
		}
	}
	if _, err := schemaFileIn(dir, "archive"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("schemaFileIn(archive) error = %v, want not-exist", err)
	}
}

const sampleSchema = `{"format_version":"1.0","provider_schemas":{"registry.terraform.io/hashicorp/google":{
 "provider":{"version":0,"block":{"attributes":{"project":{"type":"string","optional":true}}}},
 "resource_schemas":{"google_thing":{"version":2,"block":{
   "attributes":{
     "name":{"type":"string","required":true},
     "labels":{"type":["map","string"],"optional":true},
     "secret_wo":{"type":"string","optional":true,"write_only":true,"sensitive":true},
     "spec":{"type":["list",["object",{"size":"number","on":"bool"}]],"computed":true}},
   "block_types":{"config":{"nesting_mode":"list","max_items":1,"block":{
     "attributes":{"env":{"type":["map","string"],"optional":true}},
     "block_types":{"secret":{"nesting_mode":"set","block":{"attributes":{"key":{"type":"string","required":true}}}}}}}}}}},
 "data_source_schemas":{"google_thing":{"version":0,"block":{"attributes":{"name":{"type":"string","required":true}}}}},
 "functions":{"name_from_id":{"summary":"s","parameters":[{"name":"id","type":"string"}],"return_type":"string"}}}}}`

func TestDecodeSchemasKeepsTypesNestingAndFlags(t *testing.T) {
	ps, err := decodeSchemas(strings.NewReader(sampleSchema), "google")
	if err != nil {
		t.Fatal(err)
	}
	thing := ps.Resources["google_thing"]
	if thing == nil || thing.Version != 2 {
		t.Fatalf("google_thing = %+v, want version 2", thing)
	}
	attrs := map[string]*tfprotov5.SchemaAttribute{}
	for _, a := range thing.Block.Attributes {
		attrs[a.Name] = a
	}
	if !attrs["name"].Required || !attrs["secret_wo"].WriteOnly || !attrs["secret_wo"].Sensitive {
		t.Errorf("flags lost: name=%+v secret_wo=%+v", attrs["name"], attrs["secret_wo"])
	}
	wantSpec := tftypes.List{ElementType: tftypes.Object{AttributeTypes: map[string]tftypes.Type{"size": tftypes.Number, "on": tftypes.Bool}}}
	if !attrs["spec"].Type.Equal(wantSpec) {
		t.Errorf("spec type = %s, want %s", attrs["spec"].Type, wantSpec)
	}
	config := thing.Block.BlockTypes[0]
	if config.TypeName != "config" || config.Nesting != tfprotov5.SchemaNestedBlockNestingModeList || config.MaxItems != 1 {
		t.Errorf("config block = %+v", config)
	}
	if secret := config.Block.BlockTypes[0]; secret.Nesting != tfprotov5.SchemaNestedBlockNestingModeSet {
		t.Errorf("secret nesting = %v, want set", secret.Nesting)
	}
	if ps.DataSources["google_thing"] == nil || ps.Functions["name_from_id"] == nil || ps.Provider == nil {
		t.Errorf("missing data source, function or provider schema: %+v", ps)
	}
	if _, err := decodeSchemas(strings.NewReader(sampleSchema), "google-beta"); err == nil {
		t.Error("decodeSchemas(google-beta) of a google-only file succeeded, want error")
	}
}

func TestServerLoadsLazilyAndRefusesToTouchTheCloud(t *testing.T) {
	calls := 0
	srv := newServer("google", func() (string, error) {
		calls++
		return "", os.ErrNotExist
	})
	ctx := context.Background()
	if resp, _ := srv.ValidateResourceTypeConfig(ctx, &tfprotov5.ValidateResourceTypeConfigRequest{}); len(resp.Diagnostics) != 0 || calls != 0 {
		t.Errorf("validate read the schema (%d calls) or failed: %v", calls, resp.Diagnostics)
	}
	if resp, _ := srv.GetProviderSchema(ctx, &tfprotov5.GetProviderSchemaRequest{}); len(resp.Diagnostics) == 0 {
		t.Error("GetProviderSchema without a schema file succeeded")
	}
	srv.GetProviderSchema(ctx, &tfprotov5.GetProviderSchemaRequest{})
	if calls != 1 {
		t.Errorf("schema located %d times, want once", calls)
	}
	if resp, _ := srv.ApplyResourceChange(ctx, &tfprotov5.ApplyResourceChangeRequest{}); len(resp.Diagnostics) == 0 {
		t.Error("ApplyResourceChange succeeded on a schema-only provider")
	}
}

// TestRealSchemas reads the shared schema files. Where they are missing it
// skips, except under CI=true, where a missing file fails: there the
// Terraform checks would otherwise run against nothing.
func TestRealSchemas(t *testing.T) {
	for _, tt := range []struct{ providerType, resource string }{
		{"google", "google_cloudfunctions2_function"},
		{"google-beta", "google_firebase_hosting_site"},
	} {
		t.Run(tt.providerType, func(t *testing.T) {
			path, err := findSchemaFile(tt.providerType)
			if err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatal(err)
				}
				t.Skip(err)
			}
			ps, err := loadSchemaFile(path, tt.providerType)
			if err != nil {
				t.Fatal(err)
			}
			if ps.Resources[tt.resource] == nil || len(ps.Resources) < 1000 {
				t.Errorf("%s: %d resources, %s missing", path, len(ps.Resources), tt.resource)
			}
		})
	}
}
