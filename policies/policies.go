// Package policies decides which remediation answers an alert: policy files name a CEL match
// over the alert, a remediation, its parameters and the mode it may run in.
package policies

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/yamlstrict"
)

//go:embed default.yaml
var defaultPolicies []byte

// Catalog is what policies need of the remediations: to check that one exists and takes the
// parameters a policy gives it.
type Catalog interface {
	Validate(remediation string, params map[string]string) error
}

// file is the format of one policy file.
type file struct {
	Policies []policy `yaml:"policies"`
}

type policy struct {
	Name           string            `yaml:"name"`
	Description    string            `yaml:"description"`
	Match          string            `yaml:"match"`
	Remediation    string            `yaml:"remediation"`
	Mode           string            `yaml:"mode"`
	Params         map[string]string `yaml:"params"`
	Approval       *approval         `yaml:"approval"`
	Cooldown       string            `yaml:"cooldown"`
	MaxAttempts    int               `yaml:"max_attempts"`
	AttemptsWindow string            `yaml:"attempts_window"`
	Maintenance    *maintenance      `yaml:"maintenance"`
}

type approval struct {
	Users    []string `yaml:"users"`
	Groups   []string `yaml:"groups"`
	Required int      `yaml:"required"`
	Timeout  string   `yaml:"timeout"`
	FromRisk string   `yaml:"from_risk"`
}

type maintenance struct {
	Outside string   `yaml:"outside"`
	Windows []window `yaml:"windows"`
}

type window struct {
	Cron     string   `yaml:"cron"`
	Duration string   `yaml:"duration"`
	Days     []string `yaml:"days"`
	Start    string   `yaml:"start"`
	End      string   `yaml:"end"`
	TimeZone string   `yaml:"timezone"`
}

// Policy is one compiled policy.
type Policy struct {
	Name        string
	Description string
	// Source is the file the policy came from.
	Source   string
	Match    string
	Decision remediator.Decision
	program  cel.Program
}

// Set is an ordered list of policies; the first that matches decides.
type Set struct {
	policies []Policy
}

// Default returns the built-in policies.
func Default(cat Catalog) (*Set, error) {
	ps, err := parse("default.yaml (built in)", defaultPolicies, cat)
	if err != nil {
		return nil, err
	}
	return &Set{policies: ps}, nil
}

// LoadDir loads every *.yaml and *.yml file in dir, in name order. Every invalid policy is
// reported, each with its file, its name and the reason.
func LoadDir(dir string, cat Catalog) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	var (
		set  Set
		errs []error
	)
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("policies: %w", err))
			continue
		}
		ps, err := parse(path, data, cat)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		set.policies = append(set.policies, ps...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(set.policies) == 0 {
		return nil, fmt.Errorf("policies: %s holds no policies (*.yaml or *.yml)", dir)
	}
	if err := set.checkNames(); err != nil {
		return nil, err
	}
	return &set, nil
}

var env = func() *cel.Env {
	e, err := cel.NewEnv(
		cel.Variable("labels", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("annotations", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("status", cel.StringType),
		cel.Variable("cluster", cel.StringType),
		cel.Variable("text", cel.StringType),
	)
	if err != nil {
		panic(err) // the declarations above are constant
	}
	return e
}()

func parse(source string, data []byte, cat Catalog) ([]Policy, error) {
	var f file
	if err := yamlstrict.Decode(data, &f); err != nil {
		return nil, fmt.Errorf("policies %s: %w", source, err)
	}
	var (
		ps   []Policy
		errs []error
	)
	for i, p := range f.Policies {
		name := p.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("policies %s: policy %q: %s", source, name, fmt.Sprintf(format, args...)))
		}
		if p.Name == "" {
			bad("name: must not be empty")
		}
		if strings.TrimSpace(p.Match) == "" {
			bad("match: must not be empty")
			continue
		}
		ast, iss := env.Compile(p.Match)
		if iss.Err() != nil {
			bad("match: %v", iss.Err())
			continue
		}
		if ast.OutputType() != cel.BoolType {
			bad("match: must be a bool expression, not %s", ast.OutputType())
			continue
		}
		prg, err := env.Program(ast, cel.CostLimit(100000))
		if err != nil {
			bad("match: %v", err)
			continue
		}
		mode := remediator.Mode(p.Mode)
		if !slices.Contains(remediator.Modes, mode) {
			bad("mode: %q must be one of %v", p.Mode, remediator.Modes)
			continue
		}
		if mode != remediator.ModeDeny && mode != remediator.ModeContext {
			if err := cat.Validate(p.Remediation, p.Params); err != nil {
				bad("%v", err)
				continue
			}
		}
		gates, gerrs := p.gates(mode)
		for _, err := range gerrs {
			bad("%v", err)
		}
		if len(gerrs) > 0 {
			continue
		}
		ps = append(ps, Policy{
			Name:        p.Name,
			Description: strings.TrimSpace(p.Description),
			Source:      source,
			Match:       strings.TrimSpace(p.Match),
			Decision:    remediator.Decision{Policy: p.Name, Remediation: p.Remediation, Mode: mode, Params: p.Params, Gates: gates},
			program:     prg,
		})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ps, nil
}

// Defaults of the gates.
const (
	defaultApprovalTimeout = time.Hour
	defaultAttemptsWindow  = 24 * time.Hour
)

// gates checks and converts the policy's gates; every error names its key.
func (p policy) gates(mode remediator.Mode) (remediator.Gates, []error) {
	var (
		g    remediator.Gates
		errs []error
	)
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	duration := func(key, v string, def time.Duration) remediator.Duration {
		if v == "" {
			return remediator.Duration(def)
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			bad("%s: %q is not a duration such as 30m", key, v)
			return remediator.Duration(def)
		}
		return remediator.Duration(d)
	}
	if a := p.Approval; a != nil {
		rule := &remediator.ApprovalRule{Users: a.Users, Groups: a.Groups, Required: max(a.Required, 1),
			Timeout: duration("approval.timeout", a.Timeout, defaultApprovalTimeout), FromRisk: remediator.Risk(a.FromRisk)}
		switch {
		case len(a.Users) == 0 && len(a.Groups) == 0:
			bad("approval: needs users or groups who may approve")
		case a.Required < 0:
			bad("approval.required: must be at least 1")
		case len(a.Groups) == 0 && rule.Required > len(a.Users) && !slices.Contains(a.Users, remediator.AnyApprover):
			bad("approval.required: %d approvers needed but only %d users may approve", rule.Required, len(a.Users))
		}
		if rule.Timeout <= 0 {
			bad("approval.timeout: must be more than 0")
		}
		if a.FromRisk == "" && mode == remediator.ModeApprove {
			rule.FromRisk = remediator.RiskReadOnly
		}
		if rule.FromRisk != "" && !slices.Contains(remediator.Risks, rule.FromRisk) {
			bad("approval.from_risk: %q must be one of %v", a.FromRisk, remediator.Risks)
		}
		g.Approval = rule
	} else if mode == remediator.ModeApprove {
		bad("approval: mode approve needs an approval block saying who may approve")
	}
	g.Cooldown = duration("cooldown", p.Cooldown, 0)
	switch {
	case p.MaxAttempts < 0:
		bad("max_attempts: must not be negative")
	case p.MaxAttempts > remediator.RunsKept:
		bad("max_attempts: at most %d, the runs remembered per cluster and remediation, not %d", remediator.RunsKept, p.MaxAttempts)
	}
	g.MaxAttempts = p.MaxAttempts
	g.AttemptsWindow = duration("attempts_window", p.AttemptsWindow, defaultAttemptsWindow)
	if p.AttemptsWindow != "" && g.AttemptsWindow <= 0 {
		bad("attempts_window: must be more than 0")
	}
	if m := p.Maintenance; m != nil {
		mt := &remediator.Maintenance{Outside: m.Outside}
		switch m.Outside {
		case "":
			mt.Outside = remediator.OutsideWait
		case remediator.OutsideWait:
		case remediator.OutsideApprove:
			if p.Approval == nil {
				bad("maintenance.outside: approve needs an approval block saying who may approve")
			}
		default:
			bad("maintenance.outside: %q must be wait or approve", m.Outside)
		}
		if len(m.Windows) == 0 {
			bad("maintenance.windows: must not be empty")
		}
		for i, w := range m.Windows {
			key := fmt.Sprintf("maintenance.windows[%d]", i)
			win := remediator.Window{Cron: w.Cron, Days: w.Days, Start: w.Start, End: w.End, TimeZone: w.TimeZone,
				Duration: duration(key+".duration", w.Duration, 0)}
			if err := win.Validate(); err != nil {
				bad("%s: %v", key, err)
			}
			mt.Windows = append(mt.Windows, win)
		}
		g.Maintenance = mt
	}
	return g, errs
}

func (s *Set) checkNames() error {
	seen := map[string]string{}
	for _, p := range s.policies {
		if first, ok := seen[p.Name]; ok {
			return fmt.Errorf("policies %s: policy %q: name is already used in %s", p.Source, p.Name, first)
		}
		seen[p.Name] = p.Source
	}
	return nil
}

// Policies returns the policies in the order they are tried.
func (s *Set) Policies() []Policy { return slices.Clone(s.policies) }

// Match returns the decision of the first policy whose match is true for the alert. A policy
// whose expression fails on this alert (a missing label, say) does not match; its error is
// returned alongside so the caller can log it.
func (s *Set) Match(a remediator.Alert) (remediator.Decision, bool, error) {
	vars := map[string]any{
		"labels":      nonNil(a.Labels),
		"annotations": nonNil(a.Annotations),
		"status":      string(a.Status),
		"cluster":     a.Cluster,
		"text":        a.Text(),
	}
	var errs []error
	for _, p := range s.policies {
		out, _, err := p.program.Eval(vars)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy %q: %w", p.Name, err))
			continue
		}
		if out.Value() == true {
			return p.Decision, true, errors.Join(errs...)
		}
	}
	return remediator.Decision{}, false, errors.Join(errs...)
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
