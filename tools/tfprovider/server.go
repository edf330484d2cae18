package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/terraform-plugin-go/tfprotov5"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// server answers Terraform's protocol-5 calls from a schema file. The file is
// read on the first call that needs it, not at start-up: Terraform starts a
// provider process several times per command and, because the server
// declares GetProviderSchemaOptional, asks only one of them for the schema.
type server struct {
	providerType string
	locate       func() (string, error)

	once   sync.Once
	schema *providerSchema
	err    error
}

var _ tfprotov5.ProviderServer = (*server)(nil)

func newServer(providerType string, locate func() (string, error)) *server {
	return &server{providerType: providerType, locate: locate}
}

// load returns the provider schema, reading it once.
func (s *server) load() (*providerSchema, error) {
	s.once.Do(func() {
		path, err := s.locate()
		if err != nil {
			s.err = err
			return
		}
		s.schema, s.err = loadSchemaFile(path, s.providerType)
	})
	return s.schema, s.err
}

var capabilities = &tfprotov5.ServerCapabilities{GetProviderSchemaOptional: true, PlanDestroy: true}

func errorDiags(summary string, err error) []*tfprotov5.Diagnostic {
	return []*tfprotov5.Diagnostic{{
		Severity: tfprotov5.DiagnosticSeverityError,
		Summary:  summary,
		Detail:   err.Error(),
	}}
}

// unsupported is the answer to every call that would reach Google Cloud.
func (s *server) unsupported(call string) []*tfprotov5.Diagnostic {
	return []*tfprotov5.Diagnostic{{
		Severity: tfprotov5.DiagnosticSeverityError,
		Summary:  "schema-only provider",
		Detail: fmt.Sprintf("%s: this offline stand-in for the %s provider only serves schemas for "+
			"terraform validate and terraform test with mock_provider; use the real provider "+
			"(terraform init without dev_overrides) to plan or apply", call, s.providerType),
	}}
}

func (s *server) GetMetadata(context.Context, *tfprotov5.GetMetadataRequest) (*tfprotov5.GetMetadataResponse, error) {
	ps, err := s.load()
	if err != nil {
		return &tfprotov5.GetMetadataResponse{Diagnostics: errorDiags("cannot load provider schema", err)}, nil
	}
	resp := &tfprotov5.GetMetadataResponse{ServerCapabilities: capabilities}
	for _, name := range sortedKeys(ps.Resources) {
		resp.Resources = append(resp.Resources, tfprotov5.ResourceMetadata{TypeName: name})
	}
	for _, name := range sortedKeys(ps.DataSources) {
		resp.DataSources = append(resp.DataSources, tfprotov5.DataSourceMetadata{TypeName: name})
	}
	for _, name := range sortedKeys(ps.EphemeralResources) {
		resp.EphemeralResources = append(resp.EphemeralResources, tfprotov5.EphemeralResourceMetadata{TypeName: name})
	}
	for _, name := range sortedKeys(ps.Functions) {
		resp.Functions = append(resp.Functions, tfprotov5.FunctionMetadata{Name: name})
	}
	return resp, nil
}

func (s *server) GetProviderSchema(context.Context, *tfprotov5.GetProviderSchemaRequest) (*tfprotov5.GetProviderSchemaResponse, error) {
	ps, err := s.load()
	if err != nil {
		return &tfprotov5.GetProviderSchemaResponse{Diagnostics: errorDiags("cannot load provider schema", err)}, nil
	}
	return &tfprotov5.GetProviderSchemaResponse{
		ServerCapabilities:       capabilities,
		Provider:                 ps.Provider,
		ResourceSchemas:          ps.Resources,
		DataSourceSchemas:        ps.DataSources,
		EphemeralResourceSchemas: ps.EphemeralResources,
		Functions:                ps.Functions,
	}, nil
}

func (s *server) GetResourceIdentitySchemas(context.Context, *tfprotov5.GetResourceIdentitySchemasRequest) (*tfprotov5.GetResourceIdentitySchemasResponse, error) {
	return &tfprotov5.GetResourceIdentitySchemasResponse{}, nil
}

func (s *server) GetFunctions(context.Context, *tfprotov5.GetFunctionsRequest) (*tfprotov5.GetFunctionsResponse, error) {
	ps, err := s.load()
	if err != nil {
		return &tfprotov5.GetFunctionsResponse{Diagnostics: errorDiags("cannot load provider schema", err)}, nil
	}
	return &tfprotov5.GetFunctionsResponse{Functions: ps.Functions}, nil
}

// Validation: the schema itself is checked by Terraform; the rules that the
// real provider adds in code (allowed values, conflicts) are not in the
// schema files, so there is nothing more to check here.

func (s *server) PrepareProviderConfig(_ context.Context, req *tfprotov5.PrepareProviderConfigRequest) (*tfprotov5.PrepareProviderConfigResponse, error) {
	return &tfprotov5.PrepareProviderConfigResponse{PreparedConfig: req.Config}, nil
}

func (s *server) ValidateResourceTypeConfig(context.Context, *tfprotov5.ValidateResourceTypeConfigRequest) (*tfprotov5.ValidateResourceTypeConfigResponse, error) {
	return &tfprotov5.ValidateResourceTypeConfigResponse{}, nil
}

func (s *server) ValidateDataSourceConfig(context.Context, *tfprotov5.ValidateDataSourceConfigRequest) (*tfprotov5.ValidateDataSourceConfigResponse, error) {
	return &tfprotov5.ValidateDataSourceConfigResponse{}, nil
}

func (s *server) ValidateEphemeralResourceConfig(context.Context, *tfprotov5.ValidateEphemeralResourceConfigRequest) (*tfprotov5.ValidateEphemeralResourceConfigResponse, error) {
	return &tfprotov5.ValidateEphemeralResourceConfigResponse{}, nil
}

// UpgradeResourceState decodes stored state with the current schema; the
// schema files carry one version per resource, so there is nothing to upgrade.
func (s *server) UpgradeResourceState(_ context.Context, req *tfprotov5.UpgradeResourceStateRequest) (*tfprotov5.UpgradeResourceStateResponse, error) {
	ps, err := s.load()
	if err != nil {
		return &tfprotov5.UpgradeResourceStateResponse{Diagnostics: errorDiags("cannot load provider schema", err)}, nil
	}
	schema, ok := ps.Resources[req.TypeName]
	if !ok {
		return &tfprotov5.UpgradeResourceStateResponse{Diagnostics: errorDiags("unknown resource type", fmt.Errorf("%s has no resource %s", s.providerType, req.TypeName))}, nil
	}
	typ := schema.ValueType()
	value, err := req.RawState.UnmarshalWithOpts(typ, tfprotov5.UnmarshalOpts{
		ValueFromJSONOpts: tftypes.ValueFromJSONOpts{IgnoreUndefinedAttributes: true},
	})
	if err != nil {
		return &tfprotov5.UpgradeResourceStateResponse{Diagnostics: errorDiags("cannot decode state", err)}, nil
	}
	state, err := tfprotov5.NewDynamicValue(typ, value)
	if err != nil {
		return &tfprotov5.UpgradeResourceStateResponse{Diagnostics: errorDiags("cannot encode state", err)}, nil
	}
	return &tfprotov5.UpgradeResourceStateResponse{UpgradedState: &state}, nil
}

func (s *server) UpgradeResourceIdentity(context.Context, *tfprotov5.UpgradeResourceIdentityRequest) (*tfprotov5.UpgradeResourceIdentityResponse, error) {
	return &tfprotov5.UpgradeResourceIdentityResponse{Diagnostics: s.unsupported("UpgradeResourceIdentity")}, nil
}

func (s *server) StopProvider(context.Context, *tfprotov5.StopProviderRequest) (*tfprotov5.StopProviderResponse, error) {
	return &tfprotov5.StopProviderResponse{}, nil
}

// Everything below would talk to Google Cloud.

func (s *server) ConfigureProvider(context.Context, *tfprotov5.ConfigureProviderRequest) (*tfprotov5.ConfigureProviderResponse, error) {
	return &tfprotov5.ConfigureProviderResponse{Diagnostics: s.unsupported("ConfigureProvider")}, nil
}

func (s *server) ReadResource(context.Context, *tfprotov5.ReadResourceRequest) (*tfprotov5.ReadResourceResponse, error) {
	return &tfprotov5.ReadResourceResponse{Diagnostics: s.unsupported("ReadResource")}, nil
}

func (s *server) PlanResourceChange(context.Context, *tfprotov5.PlanResourceChangeRequest) (*tfprotov5.PlanResourceChangeResponse, error) {
	return &tfprotov5.PlanResourceChangeResponse{Diagnostics: s.unsupported("PlanResourceChange")}, nil
}

func (s *server) ApplyResourceChange(context.Context, *tfprotov5.ApplyResourceChangeRequest) (*tfprotov5.ApplyResourceChangeResponse, error) {
	return &tfprotov5.ApplyResourceChangeResponse{Diagnostics: s.unsupported("ApplyResourceChange")}, nil
}

func (s *server) ImportResourceState(context.Context, *tfprotov5.ImportResourceStateRequest) (*tfprotov5.ImportResourceStateResponse, error) {
	return &tfprotov5.ImportResourceStateResponse{Diagnostics: s.unsupported("ImportResourceState")}, nil
}

func (s *server) MoveResourceState(context.Context, *tfprotov5.MoveResourceStateRequest) (*tfprotov5.MoveResourceStateResponse, error) {
	return &tfprotov5.MoveResourceStateResponse{Diagnostics: s.unsupported("MoveResourceState")}, nil
}

func (s *server) GenerateResourceConfig(context.Context, *tfprotov5.GenerateResourceConfigRequest) (*tfprotov5.GenerateResourceConfigResponse, error) {
	return &tfprotov5.GenerateResourceConfigResponse{Diagnostics: s.unsupported("GenerateResourceConfig")}, nil
}

func (s *server) ReadDataSource(context.Context, *tfprotov5.ReadDataSourceRequest) (*tfprotov5.ReadDataSourceResponse, error) {
	return &tfprotov5.ReadDataSourceResponse{Diagnostics: s.unsupported("ReadDataSource")}, nil
}

func (s *server) CallFunction(context.Context, *tfprotov5.CallFunctionRequest) (*tfprotov5.CallFunctionResponse, error) {
	return &tfprotov5.CallFunctionResponse{Error: &tfprotov5.FunctionError{Text: "schema-only provider: functions are not evaluated offline"}}, nil
}

func (s *server) OpenEphemeralResource(context.Context, *tfprotov5.OpenEphemeralResourceRequest) (*tfprotov5.OpenEphemeralResourceResponse, error) {
	return &tfprotov5.OpenEphemeralResourceResponse{Diagnostics: s.unsupported("OpenEphemeralResource")}, nil
}

func (s *server) RenewEphemeralResource(context.Context, *tfprotov5.RenewEphemeralResourceRequest) (*tfprotov5.RenewEphemeralResourceResponse, error) {
	return &tfprotov5.RenewEphemeralResourceResponse{Diagnostics: s.unsupported("RenewEphemeralResource")}, nil
}

func (s *server) CloseEphemeralResource(context.Context, *tfprotov5.CloseEphemeralResourceRequest) (*tfprotov5.CloseEphemeralResourceResponse, error) {
	return &tfprotov5.CloseEphemeralResourceResponse{}, nil
}
