// Package params reads a remediation's parameters, which policies give as strings, into the
// remediation's own params struct, and renders that struct as a table. A parameter is declared
// once, on its struct field:
//
//	DefragTimeout time.Duration `param:"defrag_timeout" default:"5m" min:"1s" doc:"longest one member's defragmentation may take"`
//
// The field types it knows are string, bool, time.Duration (never negative; min: the least it may be), float64
// (range: "(lo,hi]") and Bytes (a positive byte count). A struct field without a param tag is
// walked into, so parameters shared by several remediations are one embedded struct.
package params

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/remediator/remediator"
)

// Bytes is a byte count parameter; it must be positive when it is set.
type Bytes int64

// Field is one parameter, as its struct field declares it.
type Field struct {
	// Name is the key in a policy's params.
	Name string
	// Default is the value when the key is absent, as a policy would write it; "" is none.
	Default string
	// Doc says what the parameter means, in one line.
	Doc string
	// Kind is what the value must be: a duration, a number of bytes, a ratio, true or false, or
	// text.
	Kind string
	min  string
	rng  string
	path []int
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	bytesType    = reflect.TypeFor[Bytes]()
)

// Fields lists the parameters of the struct that p points to, in declaration order. A tag it
// cannot read panics: that is a remediation's programming error, which the registry's test
// finds for every remediation.
func Fields(p any) []Field {
	t := reflect.TypeOf(p)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("params: %T is not a pointer to a struct", p))
	}
	var out []Field
	walk(t.Elem(), nil, &out)
	for i, f := range out {
		if slices.ContainsFunc(out[:i], func(o Field) bool { return o.Name == f.Name }) {
			panic(fmt.Sprintf("params: %s declares %s twice", t.Elem(), f.Name))
		}
	}
	return out
}

func walk(t reflect.Type, path []int, out *[]Field) {
	for i := range t.NumField() {
		sf := t.Field(i)
		at := append(slices.Clone(path), i)
		name, ok := sf.Tag.Lookup("param")
		if !ok {
			if sf.Type.Kind() == reflect.Struct {
				walk(sf.Type, at, out)
			}
			continue
		}
		f := Field{Name: name, Default: sf.Tag.Get("default"), Doc: sf.Tag.Get("doc"),
			min: sf.Tag.Get("min"), rng: sf.Tag.Get("range"), path: at}
		switch {
		case sf.Type == durationType:
			f.Kind = "duration"
			if _, err := time.ParseDuration(cmp.Or(f.min, "0s")); err != nil {
				panic(fmt.Sprintf("params: %s: min %q is not a duration", name, f.min))
			}
		case sf.Type == bytesType:
			f.Kind = "bytes"
		case sf.Type.Kind() == reflect.Float64:
			f.Kind = "ratio"
			if _, _, err := bounds(f.rng); err != nil {
				panic(fmt.Sprintf("params: %s: %v", name, err))
			}
		case sf.Type.Kind() == reflect.Bool:
			f.Kind = "true or false"
		case sf.Type.Kind() == reflect.String:
			f.Kind = "text"
		default:
			panic(fmt.Sprintf("params: %s: type %s is not one params reads", name, sf.Type))
		}
		if f.Doc == "" {
			panic(fmt.Sprintf("params: %s has no doc", name))
		}
		if f.Default != "" {
			if err := f.set(reflect.New(sf.Type).Elem(), f.Default); err != nil {
				panic(fmt.Sprintf("params: %s: its default: %v", name, err))
			}
		}
		*out = append(*out, f)
	}
}

// bounds reads a range "(lo,hi]": above lo and at most hi.
func bounds(rng string) (lo, hi float64, err error) {
	in, ok := strings.CutPrefix(rng, "(")
	in, ok2 := strings.CutSuffix(in, "]")
	a, b, ok3 := strings.Cut(in, ",")
	if !ok || !ok2 || !ok3 {
		return 0, 0, fmt.Errorf("range %q is not of the form (lo,hi]", rng)
	}
	if lo, err = strconv.ParseFloat(a, 64); err == nil {
		hi, err = strconv.ParseFloat(b, 64)
	}
	return lo, hi, err
}

// set parses s into v, or says what is wrong with it, after "params.<name>: ".
func (f Field) set(v reflect.Value, s string) error {
	switch f.Kind {
	case "duration":
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 30s", s)
		}
		if d < 0 {
			return fmt.Errorf("%q is negative", s)
		}
		if f.min != "" {
			if lo, _ := time.ParseDuration(f.min); d < lo {
				return fmt.Errorf("must be at least %s", lo)
			}
		}
		v.SetInt(int64(d))
	case "bytes":
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("%q must be a positive number of bytes", s)
		}
		v.SetInt(n)
	case "ratio":
		lo, hi, _ := bounds(f.rng)
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || x <= lo || x > hi {
			return fmt.Errorf("%q must be a number above %g and at most %g", s, lo, hi)
		}
		v.SetFloat(x)
	case "true or false":
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is neither true nor false", s)
		}
		v.SetBool(b)
	default:
		v.SetString(s)
	}
	return nil
}

// Parse fills the struct p points to: every parameter from its default, then from m. It
// reports every bad value and every key p does not declare, each by its key, as one EINVALID
// error.
func Parse(m map[string]string, p any) error {
	fields := Fields(p)
	v := reflect.ValueOf(p).Elem()
	var errs []error
	for _, f := range fields {
		s, ok := m[f.Name]
		if !ok {
			s = f.Default
		}
		if s == "" && !ok {
			continue
		}
		if err := f.set(v.FieldByIndex(f.path), s); err != nil {
			errs = append(errs, fmt.Errorf("params.%s: %w", f.Name, err))
		}
	}
	known := Names(fields)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(known, k) {
			errs = append(errs, fmt.Errorf("params.%s: unknown parameter (known: %v)", k, slices.Sorted(slices.Values(known))))
		}
	}
	return Invalid(errs...)
}

// Invalid joins errors about parameters into one EINVALID error, or nil if there are none.
func Invalid(errs ...error) error {
	if err := errors.Join(errs...); err != nil {
		return &remediator.Error{Code: remediator.EINVALID, Message: err.Error(), Err: err}
	}
	return nil
}

// Names lists the fields' names.
func Names(fields []Field) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.Name
	}
	return out
}

// Markdown renders the fields as a Markdown table: name, default, kind and meaning.
func Markdown(fields []Field) string {
	if len(fields) == 0 {
		return "No parameters.\n"
	}
	var b strings.Builder
	b.WriteString("| parameter | default | kind | meaning |\n|---|---|---|---|\n")
	for _, f := range fields {
		def := "none"
		if f.Default != "" {
			def = "`" + f.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.Name, def, f.describeKind(), f.Doc)
	}
	return b.String()
}

func (f Field) describeKind() string {
	switch {
	case f.Kind == "duration" && f.min != "":
		return "duration, at least " + f.min
	case f.Kind == "ratio":
		lo, hi, _ := bounds(f.rng)
		return fmt.Sprintf("number above %g, at most %g", lo, hi)
	}
	return f.Kind
}

// Of parses m into a new T (a params struct), as Parse does.
func Of[T any](m map[string]string) (T, error) {
	var p T
	err := Parse(m, &p)
	return p, err
}

// Plan reads a policy's params into a new P, as Parse does, and returns the steps that steps
// makes of it: a remediation's Plan is this, over its own params struct.
func Plan[P any](m map[string]string, steps func(P) ([]remediator.PlannedStep, error)) ([]remediator.PlannedStep, error) {
	p, err := Of[P](m)
	if err != nil {
		return nil, err
	}
	return steps(p)
}
