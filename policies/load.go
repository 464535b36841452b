package policies

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/remediator/remediator/internal/yamlstrict"
)

// Error is one problem in a policy file, with where a person finds it.
type Error struct {
	File string
	// Line is the problem's line in File, 0 when the problem is the file's as a whole (it
	// cannot be read). Column is set only for a problem in a match expression: the character,
	// in the file, where CEL stopped.
	Line, Column int
	// Policy is the policy's name, #N for the Nth policy of the file when it has none, and
	// empty for a problem of the file itself.
	Policy string
	Msg    string
}

// Error reads FILE:LINE: policy "NAME": message, or FILE:LINE:COLUMN: for a problem in a
// match expression, the form editors and terminals jump to.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Policy != "" {
		fmt.Fprintf(&b, "policy %q: ", e.Policy)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// LoadDir loads the policies in dir as Load does: serve refuses to start on any problem.
func LoadDir(dir string, cat Catalog) (*Set, error) { return Load(cat, dir) }

// Load loads the policies of paths as Check reads them, and refuses them all if any is wrong:
// the error joins every problem.
func Load(cat Catalog, paths ...string) (*Set, error) {
	ps, errs := Check(cat, paths...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Set{policies: ps}, nil
}

// Check reads the policies of paths, each a policy file or a folder whose *.yaml and *.yml files
// it reads in name order, and returns the valid policies and every problem of every file, each
// an *Error with its file and line, so that a person can fix them all in one pass.
func Check(cat Catalog, paths ...string) ([]Policy, []error) {
	var (
		ps   []Policy
		errs []error
		seen = map[string]Policy{}
	)
	for _, path := range paths {
		files, err := policyFiles(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				errs = append(errs, readError(f, err))
				continue
			}
			fps, ferrs := parse(f, data, cat)
			fps, derrs := unique(fps, seen)
			ps = append(ps, fps...)
			errs = append(errs, byLine(append(ferrs, derrs...))...)
		}
	}
	if len(errs) == 0 && len(ps) == 0 {
		errs = append(errs, fmt.Errorf("policies: no policies in %s", strings.Join(paths, ", ")))
	}
	return ps, errs
}

// policyFiles lists the policy files path names: itself, or a folder's *.yaml and *.yml files.
func policyFiles(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, readError(path, err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, readError(path, err)
	}
	var files []string
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			files = append(files, filepath.Join(path, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, &Error{File: path, Msg: "holds no policy files (*.yaml or *.yml)"}
	}
	return files, nil
}

// readError says why a file cannot be read, without the Go call that failed.
func readError(path string, err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		err = pe.Err
	}
	return &Error{File: path, Msg: err.Error()}
}

// unique keeps the policies whose name no earlier one has, and refuses the others: a name
// stands for one policy in incidents and reports.
func unique(ps []Policy, seen map[string]Policy) ([]Policy, []error) {
	var (
		kept []Policy
		errs []error
	)
	for _, p := range ps {
		if first, ok := seen[p.Name]; ok {
			errs = append(errs, &Error{File: p.Source, Line: p.line, Policy: p.Name,
				Msg: fmt.Sprintf("name is already used in %s:%d", first.Source, first.line)})
			continue
		}
		seen[p.Name] = p
		kept = append(kept, p)
	}
	return kept, errs
}

// byLine sorts one file's problems by line, the order a person fixes them in.
func byLine(errs []error) []error {
	slices.SortStableFunc(errs, func(a, b error) int {
		ea, _ := a.(*Error)
		eb, _ := b.(*Error)
		if ea == nil || eb == nil {
			return 0
		}
		return cmp.Or(cmp.Compare(ea.Line, eb.Line), cmp.Compare(ea.Column, eb.Column))
	})
	return errs
}

// problem is one thing wrong in a policy, before it is placed in its file: at the line of key
// (a path such as approval.timeout or maintenance.windows[1]), at line when the decoder
// knew it, or at a character of the match expression.
type problem struct {
	key  string
	line int
	// at is the CEL location (line from 1, column from 0) of a match expression problem.
	at  *[2]int
	msg string
}

// lineRE splits yaml.v3's and yamlstrict's "line N: message".
var lineRE = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)

// file gathers the problems of one policy file.
type file struct {
	source string
	data   []byte
	errs   []error
}

func (f *file) add(line, col int, policy, format string, args ...any) {
	f.errs = append(f.errs, &Error{File: f.source, Line: line, Column: col, Policy: policy, Msg: fmt.Sprintf(format, args...)})
}

// parse checks one policy file through and compiles its valid policies.
func parse(source string, data []byte, cat Catalog) ([]Policy, []error) {
	f := &file{source: source, data: data}
	var ps []Policy
	for i, n := range f.policyNodes() {
		if p, ok := f.policy(i, n, cat); ok {
			ps = append(ps, p)
		}
	}
	return ps, byLine(f.errs)
}

// policyNodes returns the items of the file's policies list. Policies are decoded one key at a
// time, so that one wrong key does not hide the problems of the others.
func (f *file) policyNodes() []*yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(f.data))
	var doc, extra yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			f.syntax(err)
		}
		return nil
	}
	switch err := dec.Decode(&extra); {
	case err == nil:
		f.add(extra.Line, 0, "", "a second YAML document starts here: a policy file holds one")
	case !errors.Is(err, io.EOF):
		f.syntax(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		f.add(root.Line, 0, "", "must be a mapping with the key policies")
		return nil
	}
	var items []*yaml.Node
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], alias(root.Content[i+1])
		switch first, dup := seen[k.Value]; {
		case k.Value != "policies":
			f.add(k.Line, 0, "", "%s: unknown key (known keys: policies)", k.Value)
		case dup:
			f.add(k.Line, 0, "", "policies: appears again (first at line %d)", first)
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
		case v.Kind != yaml.SequenceNode:
			f.add(v.Line, 0, "", "policies: must be a list")
		default:
			items = v.Content
		}
		seen[k.Value] = k.Line
	}
	return items
}

// syntax reports a YAML syntax error at the first line where the file stops parsing: yaml.v3
// names, for some errors, the line before the block the problem is in.
func (f *file) syntax(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	lines := bytes.SplitAfter(f.data, []byte("\n"))
	for n := 1; n <= len(lines); n++ {
		var doc yaml.Node
		if yaml.Unmarshal(bytes.Join(lines[:n], nil), &doc) != nil {
			line = max(line, n)
			break
		}
	}
	f.add(line, 0, "", "not valid YAML: %s", msg)
}

func alias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// policy decodes and compiles the i-th policy of the file, reporting every problem it has.
func (f *file) policy(i int, n *yaml.Node, cat Catalog) (Policy, bool) {
	n = alias(n)
	name := fmt.Sprintf("#%d", i+1)
	if n.Kind != yaml.MappingNode {
		f.add(n.Line, 0, name, "must be a mapping of keys to values, such as name: and match:")
		return Policy{}, false
	}
	var (
		p      policy
		probs  []problem
		broken = map[string]bool{}
		seen   = map[string]int{}
	)
	for j := 0; j+1 < len(n.Content); j += 2 {
		k, v := n.Content[j], n.Content[j+1]
		if first, dup := seen[k.Value]; dup {
			probs = append(probs, problem{line: k.Line, msg: fmt.Sprintf("%s: appears again (first at line %d)", k.Value, first)})
			broken[k.Value] = true
			continue
		}
		seen[k.Value] = k.Line
		one := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{k, v}}
		if err := yamlstrict.DecodeNode(one, &p); err != nil {
			pr := problem{line: k.Line, msg: err.Error()}
			if m := lineRE.FindStringSubmatch(pr.msg); m != nil {
				pr.line, _ = strconv.Atoi(m[1])
				pr.msg = m[2]
			}
			probs = append(probs, pr)
			broken[k.Value] = true
		}
	}
	if p.Name != "" {
		name = p.Name
	}
	compiled, cprobs := p.compile(cat)
	for _, pr := range cprobs {
		// A key that did not decode is reported once, as it is, not again as empty.
		if top, _, _ := strings.Cut(strings.Split(pr.key, "[")[0], "."); !broken[top] {
			probs = append(probs, pr)
		}
	}
	for _, pr := range probs {
		switch {
		case pr.line > 0:
			f.add(pr.line, 0, name, "%s", pr.msg)
		case pr.at != nil:
			f.addInExpression(n, name, pr)
		default:
			f.add(lineOf(n, pr.key), 0, name, "%s", pr.msg)
		}
	}
	if len(probs) > 0 {
		return Policy{}, false
	}
	compiled.Source = f.source
	compiled.line = lineOf(n, "name")
	return compiled, true
}

// addInExpression reports a problem of the match expression at its character in the file or,
// when the file spells the expression with escapes, at the match key with the column within.
func (f *file) addInExpression(n *yaml.Node, name string, pr problem) {
	var v *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "match" {
			v = n.Content[i+1]
		}
	}
	exprLines := strings.Split(v.Value, "\n")
	off := pr.at[1]
	for _, l := range exprLines[:min(pr.at[0], len(exprLines))-1] {
		off += len([]rune(l)) + 1
	}
	if line, col, ok := position(bytes.Split(f.data, []byte("\n")), v, off); ok {
		f.add(line, col, name, "%s", pr.msg)
		return
	}
	where := fmt.Sprintf("column %d", pr.at[1]+1)
	if pr.at[0] > 1 {
		where = fmt.Sprintf("line %d, column %d", pr.at[0], pr.at[1]+1)
	}
	f.add(v.Line, 0, name, "%s (%s of the expression)", pr.msg, where)
}

// position finds the file line and column (from 1) of the character at offset off of the
// scalar v. YAML folds line breaks and indentation into the value, so the walk matches the
// value's characters to the file's, a run of white space to a run of white space. It gives
// up on a quoted value with escapes, where the two differ.
func position(lines [][]byte, v *yaml.Node, off int) (line, col int, ok bool) {
	raw := make([][]rune, len(lines))
	for i, l := range lines {
		raw[i] = []rune(string(l))
	}
	expr := []rune(strings.TrimRightFunc(v.Value, unicode.IsSpace))
	off = min(off, len(expr))
	l, c := v.Line-1, v.Column-1
	switch v.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		l, c = l+1, 0
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		c++
	}
	at := func() (rune, bool) {
		switch {
		case l >= len(raw):
			return 0, false
		case c >= len(raw[l]):
			return '\n', true
		}
		return raw[l][c], true
	}
	advance := func() {
		if c >= len(raw[l]) {
			l, c = l+1, 0
		} else {
			c++
		}
	}
	skipSpace := func() {
		for r, more := at(); more && unicode.IsSpace(r); r, more = at() {
			advance()
		}
	}
	if len(expr) > 0 && !unicode.IsSpace(expr[0]) {
		skipSpace() // a block's indentation
	}
	for i := 0; i < off; {
		r, more := at()
		switch {
		case !more:
			return 0, 0, false
		case unicode.IsSpace(expr[i]) && unicode.IsSpace(r):
			for i < len(expr) && unicode.IsSpace(expr[i]) {
				if i++; i > off {
					return l + 1, c + 1, true
				}
			}
			skipSpace()
		case r == '\\' && v.Style == yaml.DoubleQuotedStyle, r == '\'' && v.Style == yaml.SingleQuotedStyle, r != expr[i]:
			return 0, 0, false
		default:
			i++
			advance()
		}
	}
	return l + 1, c + 1, true
}

// lineOf returns the line of key, a path such as approval.timeout or maintenance.windows[1],
// in a policy, or of as much of the path as the policy has.
func lineOf(n *yaml.Node, key string) int {
	line := n.Line
	for _, part := range strings.Split(key, ".") {
		name, index, _ := strings.Cut(part, "[")
		var v *yaml.Node
		for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				line, v = n.Content[i].Line, alias(n.Content[i+1])
			}
		}
		if v == nil {
			return line
		}
		if index != "" {
			i, err := strconv.Atoi(strings.TrimSuffix(index, "]"))
			if err != nil || v.Kind != yaml.SequenceNode || i >= len(v.Content) {
				return line
			}
			v = alias(v.Content[i])
			line = v.Line
		}
		n = v
	}
	return line
}
