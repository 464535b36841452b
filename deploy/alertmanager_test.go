package deploy

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	yamlv3 "gopkg.in/yaml.v3"

	"github.com/remediator/remediator/internal/errfile"
)

const (
	amConfig   = "alertmanager/alertmanager.yml"
	amReceiver = "alertmanager/receiver.yaml"
)

// TestAlertmanagerConfig runs amtool check-config on the complete example.
func TestAlertmanagerConfig(t *testing.T) {
	if out, err := run(t, "amtool", "check-config", amConfig); err != nil {
		t.Errorf("amtool check-config %s: %v\n%s", amConfig, err, out)
	}
}

// TestBrokenAlertmanagerConfigs checks that amtool refuses each file in testdata/alertmanager
// with the message its first comment names: the lint fails on what Alertmanager would refuse.
func TestBrokenAlertmanagerConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/alertmanager/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/alertmanager/*.yml: %v", err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yml"), func(t *testing.T) {
			want := errfile.Want(t, path)
			out, err := run(t, "amtool", "check-config", path)
			if err == nil || !strings.Contains(out, want) {
				t.Errorf("amtool check-config %s: %v\n%s\nwant a failure saying:\n%s", path, err, out, want)
			}
		})
	}
}

// TestAlertmanagerRoutesAlertsToRemediator asks amtool where each alert of the rule files
// goes: to remediator and to the humans. Anything else goes to the humans only.
func TestAlertmanagerRoutesAlertsToRemediator(t *testing.T) {
	var names []string
	seen := map[string]bool{}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if !seen[r.Alert] {
				names, seen[r.Alert] = append(names, r.Alert), true
			}
		}
	}
	loki, err := lintLoki(lokiRules)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range loki.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
		}
	}
	route := func(t *testing.T, alertname, want string) {
		t.Helper()
		out, err := run(t, "amtool", "config", "routes", "test", "--config.file="+amConfig, "--verify.receivers="+want,
			"alertname="+alertname, "cluster=prod")
		if err != nil {
			// amtool's output holds the receivers it resolved and its verdict, after a warning.
			t.Errorf("%s does not go to %s alone: amtool says\n%s", alertname, want, strings.TrimSpace(out))
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) { route(t, name, "remediator,oncall") })
	}
	t.Run("KubePodCrashLooping", func(t *testing.T) { route(t, "KubePodCrashLooping", "oncall") })
}

// TestReceiverSnippet checks that receiver.yaml, the snippet the README points at, is the
// route and receiver of the complete example, and that its webhook reaches remediator's
// Service with a bearer token and resolved alerts.
func TestReceiverSnippet(t *testing.T) {
	type amFile struct {
		Route struct {
			Routes []any `yaml:"routes"`
		} `yaml:"route"`
		Receivers []struct {
			Name           string `yaml:"name"`
			WebhookConfigs []struct {
				URL          string `yaml:"url"`
				SendResolved bool   `yaml:"send_resolved"`
				HTTPConfig   struct {
					Authorization struct {
						Type            string `yaml:"type"`
						CredentialsFile string `yaml:"credentials_file"`
					} `yaml:"authorization"`
				} `yaml:"http_config"`
			} `yaml:"webhook_configs"`
		} `yaml:"receivers"`
	}
	read := func(path string) (amFile, map[string]any) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var typed amFile
		var raw map[string]any
		if err := yamlv3.Unmarshal(data, &typed); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if err := yamlv3.Unmarshal(data, &raw); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return typed, raw
	}
	snippet, snippetRaw := read(amReceiver)
	_, fullRaw := read(amConfig)
	// The snippet's route must be the first child route of the example: the humans' route
	// comes after it.
	snippetRoutes := snippetRaw["route"].(map[string]any)["routes"].([]any)
	fullRoutes := fullRaw["route"].(map[string]any)["routes"].([]any)
	if len(snippetRoutes) != 1 || !reflect.DeepEqual(snippetRoutes[0], fullRoutes[0]) {
		t.Errorf("%s: its route is not the first route of %s", amReceiver, amConfig)
	}
	for _, r := range snippetRaw["receivers"].([]any) {
		var found bool
		for _, f := range fullRaw["receivers"].([]any) {
			found = found || reflect.DeepEqual(r, f)
		}
		if !found {
			t.Errorf("%s: receiver %v is not in %s as it is", amReceiver, r.(map[string]any)["name"], amConfig)
		}
	}
	d := build(t)
	for _, r := range snippet.Receivers {
		for _, w := range r.WebhookConfigs {
			if err := d.reachesRemediator(w.URL, "/webhooks/alertmanager"); err != nil {
				t.Errorf("receiver %s: %v", r.Name, err)
			}
			if !w.SendResolved {
				t.Errorf("receiver %s: send_resolved must be true: resolved alerts close remediator's incidents", r.Name)
			}
			if a := w.HTTPConfig.Authorization; a.Type != "Bearer" || a.CredentialsFile == "" {
				t.Errorf("receiver %s: needs http_config.authorization with type Bearer and a credentials_file: remediator answers 401 without the token", r.Name)
			}
		}
	}
}
