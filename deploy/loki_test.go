package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/prometheus/common/model"

	"github.com/remediator/remediator/internal/yamlstrict"
)

const lokiRules = "loki/etcd-log-rules.yaml"

// lokiRuleFile is the Loki ruler's rule file: Prometheus's format with LogQL expressions.
type lokiRuleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Limit    int    `yaml:"limit"`
		Rules    []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// logQuery is what parseLogQL understood of an alert's expression.
type logQuery struct {
	// matchers are the stream selector's: label, operator, value.
	matchers [][3]string
	// filters are the line filters: operator, text.
	filters [][2]string
}

// logQLToken matches one token of the LogQL subset the rules use: names, strings, numbers,
// durations and operators.
var logQLToken = regexp.MustCompile(`^(?:"(?:[^"\\]|\\.)*"|` + "`[^`]*`" +
	`|[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d|w|y)?|[A-Za-z_][A-Za-z0-9_]*|\|=|\|~|!=|!~|=~|>=|<=|==|[{}()\[\],=<>])`)

// parseLogQL accepts the LogQL alerting expressions of this deployment, and nothing else:
//
//	[sum by (labels) (] count_over_time|rate ( {selector} filters* [range] ) [)] > number
//
// Loki is not a dependency; this is enough to catch a broken selector, a log query where a
// metric query is needed, or a filter that is not a string.
func parseLogQL(expr string) (logQuery, error) {
	var toks []string
	for s := strings.TrimSpace(expr); s != ""; s = strings.TrimLeftFunc(s, unicode.IsSpace) {
		tok := logQLToken.FindString(s)
		if tok == "" {
			return logQuery{}, fmt.Errorf("cannot read %q", s)
		}
		toks = append(toks, tok)
		s = s[len(tok):]
	}
	p := &logQLParser{toks: toks}
	q, err := p.query()
	if err != nil {
		return logQuery{}, err
	}
	return q, nil
}

type logQLParser struct {
	toks []string
	i    int
}

func (p *logQLParser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *logQLParser) next() string { t := p.peek(); p.i++; return t }

func (p *logQLParser) want(tok string) error {
	if got := p.next(); got != tok {
		if got == "" {
			got = "the end"
		}
		return fmt.Errorf("want %q, found %s", tok, strconv.Quote(got))
	}
	return nil
}

func (p *logQLParser) str() (string, error) {
	t := p.next()
	switch {
	case strings.HasPrefix(t, "`"):
		return strings.Trim(t, "`"), nil
	case strings.HasPrefix(t, `"`):
		return strconv.Unquote(t)
	}
	return "", fmt.Errorf("want a string, found %q", t)
}

func (p *logQLParser) query() (logQuery, error) {
	aggregated := p.peek() == "sum"
	if aggregated {
		p.next()
		if err := p.want("by"); err != nil {
			return logQuery{}, err
		}
		if err := p.want("("); err != nil {
			return logQuery{}, err
		}
		for p.peek() != ")" {
			if t := p.next(); !model.LegacyValidation.IsValidLabelName(t) {
				return logQuery{}, fmt.Errorf("sum by: %q is not a label name", t)
			}
			if p.peek() == "," {
				p.next()
			}
		}
		p.next()
		if err := p.want("("); err != nil {
			return logQuery{}, err
		}
	}
	if f := p.next(); f != "count_over_time" && f != "rate" {
		return logQuery{}, fmt.Errorf("want count_over_time or rate over a log stream selector, found %q: an alert needs a metric query", f)
	}
	if err := p.want("("); err != nil {
		return logQuery{}, err
	}
	q, err := p.selector()
	if err != nil {
		return logQuery{}, err
	}
	for strings.ContainsAny(p.peek(), "|!") {
		op := p.next()
		text, err := p.str()
		if err != nil {
			return logQuery{}, fmt.Errorf("line filter %s: %w", op, err)
		}
		if op == "|~" || op == "!~" {
			if _, err := regexp.Compile(text); err != nil {
				return logQuery{}, fmt.Errorf("line filter %s: %w", op, err)
			}
		}
		q.filters = append(q.filters, [2]string{op, text})
	}
	if err := p.want("["); err != nil {
		return logQuery{}, err
	}
	d := p.next()
	if _, err := model.ParseDuration(d); err != nil {
		return logQuery{}, fmt.Errorf("range [%s]: %w", d, err)
	}
	for _, tok := range []string{"]", ")"} {
		if err := p.want(tok); err != nil {
			return logQuery{}, err
		}
	}
	if aggregated {
		if err := p.want(")"); err != nil {
			return logQuery{}, err
		}
	}
	if op := p.next(); op != ">" && op != ">=" {
		return logQuery{}, fmt.Errorf("want a comparison (> or >=) after the metric query, found %q", op)
	}
	if _, err := strconv.ParseFloat(p.next(), 64); err != nil {
		return logQuery{}, fmt.Errorf("want a number to compare with: %w", err)
	}
	if p.peek() != "" {
		return logQuery{}, fmt.Errorf("unexpected %q after the comparison", p.peek())
	}
	return q, nil
}

func (p *logQLParser) selector() (logQuery, error) {
	var q logQuery
	if err := p.want("{"); err != nil {
		return q, fmt.Errorf("stream selector: %w", err)
	}
	for p.peek() != "}" {
		name := p.next()
		if !model.LegacyValidation.IsValidLabelName(name) {
			return q, fmt.Errorf("stream selector: %q is not a label name", name)
		}
		op := p.next()
		if op != "=" && op != "!=" && op != "=~" && op != "!~" {
			return q, fmt.Errorf("stream selector: %q is not a matcher operator", op)
		}
		value, err := p.str()
		if err != nil {
			return q, fmt.Errorf("stream selector: %s: %w", name, err)
		}
		if strings.HasSuffix(op, "~") {
			if _, err := regexp.Compile("^(?:" + value + ")$"); err != nil {
				return q, fmt.Errorf("stream selector: %s: %w", name, err)
			}
		}
		q.matchers = append(q.matchers, [3]string{name, op, value})
		if p.peek() == "," {
			p.next()
		}
	}
	p.next()
	// Loki refuses a selector that could match every stream.
	positive := false
	for _, m := range q.matchers {
		if m[1] == "=" && m[2] != "" || m[1] == "=~" && !regexp.MustCompile("^(?:"+m[2]+")$").MatchString("") {
			positive = true
		}
	}
	if !positive {
		return q, errors.New("stream selector: needs a matcher that cannot match an empty label, such as namespace=\"kube-system\"")
	}
	return q, nil
}

// lintLoki decodes a Loki rule file strictly and checks every rule: a metric LogQL query, a
// severity, and the log_match annotation that carries its line filters to remediator.
func lintLoki(path string) (*lokiRuleFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f lokiRuleFile
	if err := yamlstrict.Decode(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	groups, alerts := map[string]bool{}, map[string]bool{}
	for i, g := range f.Groups {
		if g.Name == "" || groups[g.Name] {
			errs = append(errs, fmt.Errorf("%s: groups[%d]: name %q is empty or used twice", path, i, g.Name))
		}
		groups[g.Name] = true
		for j, r := range g.Rules {
			bad := func(format string, args ...any) {
				errs = append(errs, fmt.Errorf("%s: groups[%d].rules[%d] (%s): %s", path, i, j, r.Alert, fmt.Sprintf(format, args...)))
			}
			if r.Alert == "" || alerts[r.Alert] {
				bad("alert name is empty or used twice")
			}
			alerts[r.Alert] = true
			q, err := parseLogQL(r.Expr)
			if err != nil {
				bad("expr: %v", err)
				continue
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					bad("for: %v", err)
				}
			}
			if r.Labels["severity"] == "" {
				bad("no severity label")
			}
			// The policies see labels and annotations, never the log line: what the rule
			// matched must be in its log_match annotation, word for word.
			for _, filter := range q.filters {
				if filter[0] == "|=" && !strings.Contains(r.Annotations["log_match"], filter[1]) {
					bad("annotation log_match %q lacks %q, which the expression matches: remediator's policies would not see it", r.Annotations["log_match"], filter[1])
				}
			}
		}
	}
	return &f, errors.Join(errs...)
}

// TestLokiRules lints the shipped Loki rule file.
func TestLokiRules(t *testing.T) {
	if _, err := lintLoki(lokiRules); err != nil {
		t.Error(err)
	}
}

// TestBrokenLokiRules checks that each broken file in testdata/loki fails with the error its
// first comment names.
func TestBrokenLokiRules(t *testing.T) {
	files, err := filepath.Glob("testdata/loki/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/loki/*.yaml: %v", err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			_, err := lintLoki(path)
			wantError(t, path, "a Loki rule file the lint must refuse", err)
		})
	}
}

// TestLokiAlertsPickTheirPolicy checks that every log alert, as the ruler sends it (its
// labels, the stream's labels kept by the aggregation, its annotations), reaches the policy
// of the seed it is for.
func TestLokiAlertsPickTheirPolicy(t *testing.T) {
	f, err := lintLoki(lokiRules)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"EtcdLogDatabaseSpaceExceeded":      "etcd-nospace",
		"EtcdLogSnapshotFileMissing":        "etcd-snapshot-missing",
		"EtcdLogUnhealthyCluster":           "etcd-member-lost-data",
		"EtcdLogMemberAlreadyBootstrapped":  "etcd-member-lost-data",
		"EtcdLogCorruptCluster":             "etcd-member-lost-data",
		"EtcdLogAPIServerHealthcheckFailed": "apiserver-etcd-healthcheck-timeout",
		"EtcdLogSlowHealthRead":             "apiserver-etcd-healthcheck-timeout",
	}
	seen := 0
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			t.Run(r.Alert, func(t *testing.T) {
				policy, ok := want[r.Alert]
				if !ok {
					t.Fatalf("%s is not in this test's table: say which policy it should reach", r.Alert)
				}
				seen++
				labels := map[string]string{"alertname": r.Alert, "cluster": "prod", "namespace": "kube-system",
					"pod": "etcd-cp1", "container": "etcd"}
				for k, v := range r.Labels {
					labels[k] = v
				}
				if got := policyFor(t, labels, r.Annotations); got != policy {
					t.Errorf("reaches policy %q, want %q", got, policy)
				}
			})
		}
	}
	if seen != len(want) {
		t.Errorf("%d of the table's %d alerts are in %s", seen, len(want), lokiRules)
	}
}
