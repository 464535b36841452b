// Package policies decides which remediation answers an alert: policy files name a CEL match
// over the alert, a remediation, its parameters and the mode it may run in.
package policies

import (
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"

	"github.com/remediator/remediator"
)

//go:embed default.yaml
var defaultPolicies []byte

// Catalog is what policies need of the remediations: to check that one exists and takes the
// parameters a policy gives it.
type Catalog interface {
	Validate(remediation string, params map[string]string) error
}

// policy is the format of one policy in a file's policies list.
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
	Users       []string `yaml:"users"`
	Groups      []string `yaml:"groups"`
	Required    int      `yaml:"required"`
	Timeout     string   `yaml:"timeout"`
	FromRisk    string   `yaml:"from_risk"`
	PerStepFrom string   `yaml:"per_step_from"`
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
	// line is the line of the policy's name in Source, to point at it from a duplicate.
	line int
}

// Set is an ordered list of policies; the first that matches decides.
type Set struct {
	policies []Policy
}

// Default returns the built-in policies.
func Default(cat Catalog) (*Set, error) {
	ps, errs := parse("default.yaml (built in)", defaultPolicies, cat)
	ps, derrs := unique(ps, map[string]Policy{})
	if err := errors.Join(append(errs, derrs...)...); err != nil {
		return nil, err
	}
	return &Set{policies: ps}, nil
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

// compile checks a decoded policy, every key of it, and builds it; each problem names its key.
func (p policy) compile(cat Catalog) (Policy, []problem) {
	var probs []problem
	bad := func(key, format string, args ...any) {
		probs = append(probs, problem{key: key, msg: key + ": " + fmt.Sprintf(format, args...)})
	}
	if p.Name == "" {
		bad("name", "must not be empty")
	}
	prg, mprobs := matchProgram(p.Match)
	probs = append(probs, mprobs...)
	mode := remediator.Mode(p.Mode)
	if !slices.Contains(remediator.Modes, mode) {
		bad("mode", "%q must be one of %v", p.Mode, remediator.Modes)
	}
	if mode != remediator.ModeDeny && mode != remediator.ModeContext {
		if err := cat.Validate(p.Remediation, p.Params); err != nil {
			// Each bad parameter on its own line, at its key.
			for _, e := range joined(err) {
				key, _, _ := strings.Cut(e.Error(), ":")
				if !strings.HasPrefix(key, "params.") {
					key = "remediation"
				}
				probs = append(probs, problem{key: key, msg: e.Error()})
			}
		}
	}
	gates, gprobs := p.gates(mode)
	probs = append(probs, gprobs...)
	return Policy{
		Name:        p.Name,
		Description: strings.TrimSpace(p.Description),
		Match:       strings.TrimSpace(p.Match),
		Decision:    remediator.Decision{Policy: p.Name, Remediation: p.Remediation, Mode: mode, Params: p.Params, Gates: gates},
		program:     prg,
	}, probs
}

// matchProgram compiles a match expression; a CEL error keeps its place in the expression.
func matchProgram(expr string) (cel.Program, []problem) {
	if strings.TrimSpace(expr) == "" {
		return nil, []problem{{key: "match", msg: "match: must not be empty"}}
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		var probs []problem
		for _, e := range iss.Errors() {
			pr := problem{key: "match", msg: "match: " + e.Message}
			if e.Location != nil && e.Location.Line() >= 1 {
				pr.at = &[2]int{e.Location.Line(), e.Location.Column()}
			}
			probs = append(probs, pr)
		}
		return nil, probs
	}
	if ast.OutputType() != cel.BoolType {
		return nil, []problem{{key: "match", msg: fmt.Sprintf("match: must be a bool expression, not %s", ast.OutputType())}}
	}
	prg, err := env.Program(ast, cel.CostLimit(100000))
	if err != nil {
		return nil, []problem{{key: "match", msg: fmt.Sprintf("match: %v", err)}}
	}
	return prg, nil
}

// joined returns the errors err joins, under any wrapping, or err alone.
func joined(err error) []error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			return j.Unwrap()
		}
	}
	return []error{err}
}

// Defaults of the gates.
const (
	defaultApprovalTimeout = time.Hour
	defaultAttemptsWindow  = 24 * time.Hour
)

// gates checks and converts the policy's gates; every problem names its key.
func (p policy) gates(mode remediator.Mode) (remediator.Gates, []problem) {
	var (
		g     remediator.Gates
		probs []problem
	)
	bad := func(key, format string, args ...any) {
		probs = append(probs, problem{key: key, msg: key + ": " + fmt.Sprintf(format, args...)})
	}
	duration := func(key, v string, def time.Duration) remediator.Duration {
		if v == "" {
			return remediator.Duration(def)
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			bad(key, "%q is not a duration such as 30m", v)
			return remediator.Duration(def)
		}
		return remediator.Duration(d)
	}
	if a := p.Approval; a != nil {
		rule := &remediator.ApprovalRule{Users: a.Users, Groups: a.Groups, Required: max(a.Required, 1),
			Timeout: duration("approval.timeout", a.Timeout, defaultApprovalTimeout), FromRisk: remediator.Risk(a.FromRisk)}
		switch {
		case len(a.Users) == 0 && len(a.Groups) == 0:
			bad("approval", "needs users or groups who may approve")
		case a.Required < 0:
			bad("approval.required", "must be at least 1")
		case len(a.Groups) == 0 && rule.Required > len(a.Users) && !slices.Contains(a.Users, remediator.AnyApprover):
			bad("approval.required", "%d approvers needed but only %d users may approve", rule.Required, len(a.Users))
		}
		if rule.Timeout <= 0 {
			bad("approval.timeout", "must be more than 0")
		}
		if a.FromRisk == "" && mode == remediator.ModeApprove {
			rule.FromRisk = remediator.RiskReadOnly
		}
		if rule.FromRisk != "" && !slices.Contains(remediator.Risks, rule.FromRisk) {
			bad("approval.from_risk", "%q must be one of %v", a.FromRisk, remediator.Risks)
		}
		if a.PerStepFrom != "" {
			rule.PerStepFrom = remediator.Risk(a.PerStepFrom)
			switch {
			case !slices.Contains(remediator.Risks, rule.PerStepFrom):
				bad("approval.per_step_from", "%q must be one of %v", a.PerStepFrom, remediator.Risks)
			case rule.FromRisk == "":
				bad("approval.per_step_from", "needs from_risk: a step gets an approval of its own only where steps wait for approval at all")
			case slices.Contains(remediator.Risks, rule.FromRisk) && !rule.PerStepFrom.AtLeast(rule.FromRisk):
				bad("approval.per_step_from", "%q is below from_risk %q: it must be at or above it, as only the steps from_risk gates wait", a.PerStepFrom, rule.FromRisk)
			}
		}
		g.Approval = rule
	} else if mode == remediator.ModeApprove {
		bad("approval", "mode approve needs an approval block saying who may approve")
	}
	g.Cooldown = duration("cooldown", p.Cooldown, 0)
	switch {
	case p.MaxAttempts < 0:
		bad("max_attempts", "must not be negative")
	case p.MaxAttempts > remediator.RunsKept:
		bad("max_attempts", "at most %d, the runs remembered per cluster and remediation, not %d", remediator.RunsKept, p.MaxAttempts)
	}
	g.MaxAttempts = p.MaxAttempts
	g.AttemptsWindow = duration("attempts_window", p.AttemptsWindow, defaultAttemptsWindow)
	if p.AttemptsWindow != "" && g.AttemptsWindow <= 0 {
		bad("attempts_window", "must be more than 0")
	}
	if m := p.Maintenance; m != nil {
		mt := &remediator.Maintenance{Outside: m.Outside}
		switch m.Outside {
		case "":
			mt.Outside = remediator.OutsideWait
		case remediator.OutsideWait:
		case remediator.OutsideApprove:
			if p.Approval == nil {
				bad("maintenance.outside", "approve needs an approval block saying who may approve")
			}
		default:
			bad("maintenance.outside", "%q must be wait or approve", m.Outside)
		}
		if len(m.Windows) == 0 {
			bad("maintenance.windows", "must not be empty")
		}
		for i, w := range m.Windows {
			key := fmt.Sprintf("maintenance.windows[%d]", i)
			win := remediator.Window{Cron: w.Cron, Days: w.Days, Start: w.Start, End: w.End, TimeZone: w.TimeZone,
				Duration: duration(key+".duration", w.Duration, 0)}
			if err := win.Validate(); err != nil {
				bad(key, "%v", err)
			}
			mt.Windows = append(mt.Windows, win)
		}
		g.Maintenance = mt
	}
	return g, probs
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
