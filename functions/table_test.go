package functions_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/paymeter/paymeter/functions"
)

// deployed reads terraform/functions.tf's map of functions: each function's
// name (the Cloud Run service, firebase.json's functionId), its entry
// point, and whether it is public.
func deployed(t *testing.T) map[string]struct {
	name   string
	public bool
} {
	t.Helper()
	tf, err := os.ReadFile("../terraform/functions.tf")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?m)^    ([a-z-]+) = \{\n((?:      .*\n)+?)    \}`)
	entry := regexp.MustCompile(`entry_point\s*=\s*"(\w+)"`)
	public := regexp.MustCompile(`public\s*=\s*(true|false)`)
	out := map[string]struct {
		name   string
		public bool
	}{}
	for _, m := range block.FindAllStringSubmatch(string(tf), -1) {
		e, p := entry.FindStringSubmatch(m[2]), public.FindStringSubmatch(m[2])
		if e == nil || p == nil {
			continue
		}
		out[e[1]] = struct {
			name   string
			public bool
		}{m[1], p[1] == "true"}
	}
	return out
}

// Every entry point of the table is deployed by Terraform under its name,
// public unless private, and firebase.json rewrites exactly its paths to it;
// nothing is deployed or rewritten that the table does not list.
func TestTableIsWhatIsDeployed(t *testing.T) {
	fns := deployed(t)
	raw, err := os.ReadFile("../firebase.json")
	if err != nil {
		t.Fatal(err)
	}
	var fb struct {
		Hosting struct {
			Rewrites []struct {
				Source   string `json:"source"`
				Function *struct {
					FunctionID string `json:"functionId"`
				} `json:"function"`
			} `json:"rewrites"`
		} `json:"hosting"`
	}
	if err := json.Unmarshal(raw, &fb); err != nil {
		t.Fatal(err)
	}
	rewrites := map[string][]string{} // functionId -> sources
	for _, r := range fb.Hosting.Rewrites {
		if r.Function != nil {
			rewrites[r.Function.FunctionID] = append(rewrites[r.Function.FunctionID], r.Source)
		}
	}
	if len(fns) != len(functions.Table) {
		t.Errorf("terraform deploys %d functions, the table lists %d", len(fns), len(functions.Table))
	}
	for _, e := range functions.Table {
		fn, ok := fns[e.Name]
		if !ok {
			t.Errorf("%s: no function in terraform/functions.tf has entry_point %q", e.Name, e.Name)
			continue
		}
		if fn.public == e.Private {
			t.Errorf("%s: terraform says public = %v, the table private = %v", e.Name, fn.public, e.Private)
		}
		var want []string
		if !e.Private {
			for _, p := range e.Paths {
				want = append(want, strings.ReplaceAll(p, "/{id}", "/**"))
			}
		}
		got := rewrites[fn.name]
		delete(rewrites, fn.name)
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s (%s): firebase.json rewrites %v, the table lists %v", e.Name, fn.name, got, want)
		}
	}
	for id, sources := range rewrites {
		t.Errorf("firebase.json rewrites %v to %q, which the table does not list", sources, id)
	}
}

// Each deployed function registers its own entry point and no other.
func TestFunctionsBuildsOneEntryPointAlone(t *testing.T) {
	srv := &functions.Server{}
	for _, e := range functions.Table {
		got := srv.Functions(e.Name)
		if e.Private {
			if len(got) != 0 {
				t.Errorf("%s built without a task guard", e.Name)
			}
			continue
		}
		if len(got) != 1 || got[0].Name != e.Name {
			t.Errorf("Functions(%q) = %d functions", e.Name, len(got))
		}
	}
}
