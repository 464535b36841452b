package deploy

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	yamlv3 "gopkg.in/yaml.v3"

	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/internal/yamlstrict"
)

// configKeys lists every key of a configuration type, dotted, with [] for the elements of a
// list (clusters[].name); a map's keys are the user's and not listed.
func configKeys(prefix string, t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Struct:
			keys = append(keys, configKeys(key+".", ft)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, configKeys(key+"[].", ft.Elem())...)
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

// documentKeys lists the keys a YAML document sets, as configKeys names them.
func documentKeys(prefix string, n *yamlv3.Node, into map[string]bool) {
	switch n.Kind {
	case yamlv3.DocumentNode:
		for _, c := range n.Content {
			documentKeys(prefix, c, into)
		}
	case yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := prefix + n.Content[i].Value
			into[key] = true
			documentKeys(key+".", n.Content[i+1], into)
		}
	case yamlv3.SequenceNode:
		for _, c := range n.Content {
			documentKeys(strings.TrimSuffix(prefix, ".")+"[].", c, into)
		}
	}
}

// checkExample checks that an example configuration decodes strictly and sets every key of
// the configuration, so that it documents them all.
func checkExample(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var cfg config.Config
	if err := yamlstrict.Decode(data, &cfg); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(data, &doc); err != nil {
		return err
	}
	set := map[string]bool{}
	documentKeys("", &doc, set)
	var missing []string
	for _, k := range configKeys("", reflect.TypeFor[config.Config]()) {
		if !set[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s lacks %s: every key goes in it, with its meaning and default", file, strings.Join(missing, ", "))
	}
	return nil
}

// TestExampleConfigHasEveryKey checks remediator.example.yaml against internal/config's types,
// and that the example without two of its keys fails.
func TestExampleConfigHasEveryKey(t *testing.T) {
	const example = "remediator.example.yaml"
	if err := checkExample(example); err != nil {
		t.Error(err)
	}
	// The broken twin is the example itself without nats.agents_file and webhook.insecure, so
	// that it stays the example's twin as keys are added.
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, key := range [][]string{{"nats", "agents_file"}, {"webhook", "insecure"}} {
		if !deleteKey(doc.Content[0], key...) {
			t.Fatalf("%s has no %s", example, strings.Join(key, "."))
		}
	}
	if data, err = yamlv3.Marshal(&doc); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(t.TempDir(), "example.yaml")
	if err := os.WriteFile(broken, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want := broken + " lacks nats.agents_file, webhook.insecure: every key goes in it, with its meaning and default"
	if err := checkExample(broken); err == nil || err.Error() != want {
		t.Errorf("the example without two keys:\nerror:\n%v\nwant:\n%s", err, want)
	}
}

// deleteKey removes the key at a path of a YAML mapping, saying whether it was there.
func deleteKey(n *yamlv3.Node, path ...string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value != path[0] {
			continue
		}
		if len(path) == 1 {
			n.Content = slices.Delete(n.Content, i, i+2)
			return true
		}
		return deleteKey(n.Content[i+1], path[1:]...)
	}
	return false
}

// checkKeysConfig checks the configuration the key commands run with (keys.yaml): its key and
// agents file must be those serve's pod gets, and its clusters serve's.
func checkKeysConfig(file, serveKey string, agents map[string]string, clusters []string) error {
	cfg, err := config.Load(file, noEnv)
	if err != nil {
		return err
	}
	var errs []string
	key, err := publicKey(cfg.NATS.NkeyFile)
	switch {
	case err != nil:
		errs = append(errs, fmt.Sprintf("nats.nkey_file: %v", err))
	case key != serveKey:
		errs = append(errs, fmt.Sprintf("nats.nkey_file %s holds the key %s, but serve's pod gets %s: the commands would enter and sign for another identity", cfg.NATS.NkeyFile, key, serveKey))
	}
	if !maps.Equal(cfg.NATS.Agents, agents) {
		errs = append(errs, fmt.Sprintf("nats.agents_file %s is not the agents file serve's pod gets", cfg.NATS.AgentsFile))
	}
	for _, c := range cfg.ClusterNames() {
		if !slices.Contains(clusters, c) {
			errs = append(errs, fmt.Sprintf("cluster %q is not one of serve's (%s)", c, strings.Join(clusters, ", ")))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %s", file, strings.Join(errs, "; "))
	}
	return nil
}

// TestKeyCommandsConfig checks that kubernetes/remediator/keys.yaml, the configuration the
// README's key commands run with, names the files serve's pod gets, and that one naming
// another key than the fixture's serve fails.
func TestKeyCommandsConfig(t *testing.T) {
	d := build(t)
	if err := checkKeysConfig("kubernetes/remediator/keys.yaml", d.serveKey, d.serve.NATS.Agents, d.serve.ClusterNames()); err != nil {
		t.Error(err)
	}
	f, err := fixture()
	if err != nil {
		t.Fatal("testdata/kustomize/cluster does not pass the lint: see TestFixtureCluster")
	}
	const broken = "testdata/keys/agent-seed.yaml"
	err = checkKeysConfig(broken, f.serveKey, f.serve.NATS.Agents, f.serve.ClusterNames())
	wantError(t, broken, "the key commands would sign for another identity than serve's", err)
}
