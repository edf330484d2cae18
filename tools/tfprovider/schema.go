package main

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/hashicorp/terraform-plugin-go/tfprotov5"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// The shape of `terraform providers schema -json` (format_version 1.0).
type (
	jsonSchemas struct {
		FormatVersion   string                        `json:"format_version"`
		ProviderSchemas map[string]jsonProviderSchema `json:"provider_schemas"`
	}
	jsonProviderSchema struct {
		Provider                 *jsonSchema             `json:"provider"`
		ResourceSchemas          map[string]*jsonSchema  `json:"resource_schemas"`
		DataSourceSchemas        map[string]*jsonSchema  `json:"data_source_schemas"`
		EphemeralResourceSchemas map[string]*jsonSchema  `json:"ephemeral_resource_schemas"`
		Functions                map[string]jsonFunction `json:"functions"`
	}
	jsonSchema struct {
		Version int64     `json:"version"`
		Block   jsonBlock `json:"block"`
	}
	jsonBlock struct {
		Attributes      map[string]jsonAttribute `json:"attributes"`
		BlockTypes      map[string]jsonBlockType `json:"block_types"`
		Description     string                   `json:"description"`
		DescriptionKind string                   `json:"description_kind"`
		Deprecated      bool                     `json:"deprecated"`
	}
	jsonAttribute struct {
		Type            json.RawMessage `json:"type"`
		Description     string          `json:"description"`
		DescriptionKind string          `json:"description_kind"`
		Required        bool            `json:"required"`
		Optional        bool            `json:"optional"`
		Computed        bool            `json:"computed"`
		Sensitive       bool            `json:"sensitive"`
		Deprecated      bool            `json:"deprecated"`
		WriteOnly       bool            `json:"write_only"`
	}
	jsonBlockType struct {
		NestingMode string    `json:"nesting_mode"`
		Block       jsonBlock `json:"block"`
		MinItems    int64     `json:"min_items"`
		MaxItems    int64     `json:"max_items"`
	}
	jsonFunction struct {
		Summary            string              `json:"summary"`
		Description        string              `json:"description"`
		DescriptionKind    string              `json:"description_kind"`
		DeprecationMessage string              `json:"deprecation_message"`
		ReturnType         json.RawMessage     `json:"return_type"`
		Parameters         []jsonFunctionParam `json:"parameters"`
		VariadicParameter  *jsonFunctionParam  `json:"variadic_parameter"`
	}
	jsonFunctionParam struct {
		Name               string          `json:"name"`
		Description        string          `json:"description"`
		DescriptionKind    string          `json:"description_kind"`
		Type               json.RawMessage `json:"type"`
		IsNullable         bool            `json:"is_nullable"`
		AllowUnknownValues bool            `json:"allow_unknown_values"`
	}
)

// providerSchema is one provider's schema in the protocol's own types.
type providerSchema struct {
	Provider           *tfprotov5.Schema
	Resources          map[string]*tfprotov5.Schema
	DataSources        map[string]*tfprotov5.Schema
	EphemeralResources map[string]*tfprotov5.Schema
	Functions          map[string]*tfprotov5.Function
}

// loadSchemaFile reads a gzipped schema file and returns the schema of the
// provider whose address ends in /providerType. It returns an error if the
// file cannot be read or parsed, or holds no such provider.
func loadSchemaFile(path, providerType string) (*providerSchema, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	ps, err := decodeSchemas(zr, providerType)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return ps, nil
}

// decodeSchemas parses schema JSON and converts the schema of providerType.
func decodeSchemas(r io.Reader, providerType string) (*providerSchema, error) {
	var doc jsonSchemas
	if err := json.NewDecoder(r).Decode(&doc); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	var found *jsonProviderSchema
	for addr, p := range doc.ProviderSchemas {
		if addr == providerType || hasSuffix(addr, "/"+providerType) {
			found = &p
			break
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no schema for provider %q", providerType)
	}
	return convertProvider(found)
}

func hasSuffix(s, suffix string) bool {
	return len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix
}

func convertProvider(p *jsonProviderSchema) (*providerSchema, error) {
	out := &providerSchema{
		Resources:          map[string]*tfprotov5.Schema{},
		DataSources:        map[string]*tfprotov5.Schema{},
		EphemeralResources: map[string]*tfprotov5.Schema{},
		Functions:          map[string]*tfprotov5.Function{},
	}
	var err error
	if p.Provider != nil {
		if out.Provider, err = convertSchema(p.Provider); err != nil {
			return nil, fmt.Errorf("provider: %w", err)
		}
	} else {
		out.Provider = &tfprotov5.Schema{Block: &tfprotov5.SchemaBlock{}}
	}
	for _, group := range []struct {
		in  map[string]*jsonSchema
		out map[string]*tfprotov5.Schema
	}{
		{p.ResourceSchemas, out.Resources},
		{p.DataSourceSchemas, out.DataSources},
		{p.EphemeralResourceSchemas, out.EphemeralResources},
	} {
		for name, s := range group.in {
			if group.out[name], err = convertSchema(s); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	for name, f := range p.Functions {
		if out.Functions[name], err = convertFunction(f); err != nil {
			return nil, fmt.Errorf("function %s: %w", name, err)
		}
	}
	return out, nil
}

func convertSchema(s *jsonSchema) (*tfprotov5.Schema, error) {
	block, err := convertBlock(&s.Block, s.Version)
	if err != nil {
		return nil, err
	}
	return &tfprotov5.Schema{Version: s.Version, Block: block}, nil
}

func convertBlock(b *jsonBlock, version int64) (*tfprotov5.SchemaBlock, error) {
	out := &tfprotov5.SchemaBlock{
		Version:         version,
		Description:     b.Description,
		DescriptionKind: stringKind(b.DescriptionKind),
		Deprecated:      b.Deprecated,
	}
	for _, name := range sortedKeys(b.Attributes) {
		a := b.Attributes[name]
		typ, err := tftypes.ParseJSONType(a.Type) //nolint:staticcheck // the JSON type notation is exactly what we hold
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", name, err)
		}
		out.Attributes = append(out.Attributes, &tfprotov5.SchemaAttribute{
			Name:            name,
			Type:            typ,
			Description:     a.Description,
			DescriptionKind: stringKind(a.DescriptionKind),
			Required:        a.Required,
			Optional:        a.Optional,
			Computed:        a.Computed,
			Sensitive:       a.Sensitive,
			Deprecated:      a.Deprecated,
			WriteOnly:       a.WriteOnly,
		})
	}
	for _, name := range sortedKeys(b.BlockTypes) {
		bt := b.BlockTypes[name]
		nesting, err := nestingMode(bt.NestingMode)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", name, err)
		}
		inner, err := convertBlock(&bt.Block, 0)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", name, err)
		}
		out.BlockTypes = append(out.BlockTypes, &tfprotov5.SchemaNestedBlock{
			TypeName: name,
			Block:    inner,
			Nesting:  nesting,
			MinItems: bt.MinItems,
			MaxItems: bt.MaxItems,
		})
	}
	return out, nil
}

func convertFunction(f jsonFunction) (*tfprotov5.Function, error) {
	ret, err := tftypes.ParseJSONType(f.ReturnType) //nolint:staticcheck
	if err != nil {
		return nil, fmt.Errorf("return type: %w", err)
	}
	out := &tfprotov5.Function{
		Summary:            f.Summary,
		Description:        f.Description,
		DescriptionKind:    stringKind(f.DescriptionKind),
		DeprecationMessage: f.DeprecationMessage,
		Return:             &tfprotov5.FunctionReturn{Type: ret},
	}
	for _, p := range f.Parameters {
		param, err := convertParam(p)
		if err != nil {
			return nil, err
		}
		out.Parameters = append(out.Parameters, param)
	}
	if f.VariadicParameter != nil {
		if out.VariadicParameter, err = convertParam(*f.VariadicParameter); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func convertParam(p jsonFunctionParam) (*tfprotov5.FunctionParameter, error) {
	typ, err := tftypes.ParseJSONType(p.Type) //nolint:staticcheck
	if err != nil {
		return nil, fmt.Errorf("parameter %s: %w", p.Name, err)
	}
	return &tfprotov5.FunctionParameter{
		Name:               p.Name,
		Type:               typ,
		Description:        p.Description,
		DescriptionKind:    stringKind(p.DescriptionKind),
		AllowNullValue:     p.IsNullable,
		AllowUnknownValues: p.AllowUnknownValues,
	}, nil
}

func nestingMode(s string) (tfprotov5.SchemaNestedBlockNestingMode, error) {
	switch s {
	case "single":
		return tfprotov5.SchemaNestedBlockNestingModeSingle, nil
	case "list":
		return tfprotov5.SchemaNestedBlockNestingModeList, nil
	case "set":
		return tfprotov5.SchemaNestedBlockNestingModeSet, nil
	case "map":
		return tfprotov5.SchemaNestedBlockNestingModeMap, nil
	case "group":
		return tfprotov5.SchemaNestedBlockNestingModeGroup, nil
	}
	return tfprotov5.SchemaNestedBlockNestingModeInvalid, fmt.Errorf("unknown nesting mode %q", s)
}

func stringKind(s string) tfprotov5.StringKind {
	if s == "markdown" {
		return tfprotov5.StringKindMarkdown
	}
	return tfprotov5.StringKindPlain
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
