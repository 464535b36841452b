// Package yamlstrict decodes YAML strictly: a key the target does not have, or a value of the
// wrong shape, is an error that names the line and the key's full path
// (`line 7: clusters[0].etcd.endpoints: must be a list`), not only the Go type it missed.
package yamlstrict

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// Decode decodes one YAML document into v, a pointer to a struct, refusing unknown keys. An
// empty document leaves v as it is, so defaults set before the call survive.
func Decode(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return DecodeNode(&root, v)
}

// DecodeNode decodes a parsed YAML document or node into v as Decode does, for callers that
// reshape the document first (say, to accept an older short form of a value).
func DecodeNode(doc *yaml.Node, v any) error {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if err := check(doc, reflect.TypeOf(v), ""); err != nil {
		return err
	}
	if err := doc.Decode(v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

func check(n *yaml.Node, t reflect.Type, path string) error {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return leaf(n, t, path)
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fail(n, path, "must be a mapping of keys to values")
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				return fail(k, join(path, k.Value), "unknown key (known keys: %s)", strings.Join(keys(t), ", "))
			}
			if err := check(val, ft, join(path, k.Value)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fail(n, path, "must be a list")
		}
		for i, c := range n.Content {
			if err := check(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return fail(n, path, "must be a mapping of keys to values")
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := check(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
		return nil
	}
	return leaf(n, t, path)
}

func leaf(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind != yaml.ScalarNode {
		return fail(n, path, "must be a single value, not a list or mapping")
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return fail(n, path, "%q is not %s", n.Value, kindWords(t))
		}
		return fail(n, path, "%v", err)
	}
	return nil
}

// kindWords says what a value of type t must be, in a configuration's words, not Go's.
func kindWords(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "text"
	}
	return "a value of the right kind"
}

// yamlFields maps a struct's YAML keys to their types; fields tagged `yaml:"-"` are not keys.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields
}

func keys(t reflect.Type) []string {
	return slices.Sorted(maps.Keys(yamlFields(t)))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func fail(n *yaml.Node, path, format string, args ...any) error {
	if path == "" {
		path = "(document)"
	}
	return fmt.Errorf("line %d: %s: %s", n.Line, path, fmt.Sprintf(format, args...))
}
