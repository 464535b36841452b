package remediations

import (
	"flag"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/remediator/remediator"
)

var update = flag.Bool("update", false, "rewrite the README's section on the remediations")

const (
	readmeBegin = "<!-- remediations:begin -->\n"
	readmeEnd   = "<!-- remediations:end -->"
)

// The README's section on the remediations is what the code declares, so that a parameter is
// written once, on its struct field.
func TestREADME(t *testing.T) {
	ds, err := New(Deps{}).Describe()
	if err != nil {
		t.Fatal(err)
	}
	want := Markdown(ds)
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	begin, end := strings.Index(readme, readmeBegin), strings.Index(readme, readmeEnd)
	if begin < 0 || end < begin {
		t.Fatalf("README.md has no %q ... %q section", strings.TrimSpace(readmeBegin), readmeEnd)
	}
	begin += len(readmeBegin)
	if got := readme[begin:end]; got != want {
		if *update {
			if err := os.WriteFile("../README.md", []byte(readme[:begin]+want+readme[end:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("README.md's section on the remediations is not what the code declares; run `go test ./remediations -run TestREADME -update`. It should read:\n%s", want)
	}
}

// Every remediation plans on its defaults, declares each parameter with a meaning, takes every
// parameter it declares, and refuses one it does not, naming it.
func TestEveryRemediationDeclaresItsParams(t *testing.T) {
	c := New(Deps{})
	ds, err := c.Describe()
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != len(c.byName) {
		t.Fatalf("%d descriptions for %d remediations", len(ds), len(c.byName))
	}
	risks := []remediator.Risk{remediator.RiskReadOnly, remediator.RiskLow, remediator.RiskHigh, remediator.RiskDestructive}
	for _, d := range ds {
		t.Run(d.Name, func(t *testing.T) {
			if len(d.Steps) == 0 {
				t.Fatal("no steps")
			}
			for _, s := range d.Steps {
				if s.Name == "" || s.Description == "" || s.Run == nil {
					t.Errorf("step %+v lacks a name, a description or a body", s)
				}
				if !slices.Contains(risks, s.Risk) {
					t.Errorf("step %s has risk %q", s.Name, s.Risk)
				}
			}
			defaults := map[string]string{}
			for _, f := range d.Params {
				if f.Doc == "" || f.Kind == "" {
					t.Errorf("parameter %s lacks a meaning or a kind", f.Name)
				}
				if f.Default != "" {
					defaults[f.Name] = f.Default
				}
			}
			if err := c.Validate(d.Name, defaults); err != nil {
				t.Errorf("its own defaults, given explicitly, are refused: %v", err)
			}
			err := c.Validate(d.Name, map[string]string{"no_such_param": "1"})
			if remediator.ErrorCode(err) != remediator.EINVALID || !strings.Contains(err.Error(), "no_such_param") {
				t.Errorf("an unknown parameter gave %v, want EINVALID naming it", err)
			}
		})
	}
}
