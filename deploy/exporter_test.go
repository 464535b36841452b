package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"testing"
)

// kubeEvent is the part of an event, as kubernetes-event-exporter hands it to its routes,
// that routing reads.
type kubeEvent struct {
	Metadata struct {
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	InvolvedObject struct {
		Kind        string            `json:"kind"`
		APIVersion  string            `json:"apiVersion"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"involvedObject"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Type    string `json:"type"`
	Source  struct {
		Component string `json:"component"`
		Host      string `json:"host"`
	} `json:"source"`
	Count int32 `json:"count"`
}

// matches is the exporter's Rule.MatchesEvent: every field the rule sets is an unanchored
// regular expression the event's field must match; every label and annotation it names must
// be on the involved object and match.
func (r exporterRule) matches(e kubeEvent) bool {
	for _, f := range [][2]string{
		{r.Message, e.Message}, {r.APIVersion, e.InvolvedObject.APIVersion}, {r.Kind, e.InvolvedObject.Kind},
		{r.Namespace, e.Metadata.Namespace}, {r.Reason, e.Reason}, {r.Type, e.Type},
		{r.Component, e.Source.Component}, {r.Host, e.Source.Host},
	} {
		if f[0] != "" && !regexp.MustCompile(f[0]).MatchString(f[1]) {
			return false
		}
	}
	for _, m := range []struct{ rule, object map[string]string }{
		{r.Labels, e.InvolvedObject.Labels}, {r.Annotations, e.InvolvedObject.Annotations},
	} {
		for k, re := range m.rule {
			v, ok := m.object[k]
			if !ok || !regexp.MustCompile(re).MatchString(v) {
				return false
			}
		}
	}
	return e.Count >= r.MinCount
}

// receivers is the exporter's Route.ProcessEvent: a matching drop rule ends the route; every
// matching match rule sends to its receiver; the sub-routes run if all match rules matched.
func (r exporterRoute) receivers(e kubeEvent) []string {
	for _, d := range r.Drop {
		if d.matches(e) {
			return nil
		}
	}
	var out []string
	all := true
	for _, m := range r.Match {
		switch {
		case !m.matches(e):
			all = false
		case m.Receiver != "":
			out = append(out, m.Receiver)
		}
	}
	if all {
		for _, sub := range r.Routes {
			out = append(out, sub.receivers(e)...)
		}
	}
	return out
}

// TestEventExporterRoutes sends sample events through the shipped exporter configuration:
// the control plane's warnings and the seeds' errors reach remediator, once each; the rest
// stays out.
func TestEventExporterRoutes(t *testing.T) {
	cfg := build(t).exporter
	if cfg == nil {
		t.Fatal("no kubernetes-event-exporter configuration in the build")
	}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"etcd-liveness-unhealthy", []string{"remediator"}},
		{"apiserver-backoff", []string{"remediator"}},
		// Both routes would take it (a control-plane pod, and a seed's error string): the
		// second route's drop rule keeps it from being sent twice.
		{"apiserver-readiness-etcd-failed", []string{"remediator"}},
		{"replicaset-nospace", []string{"remediator"}},
		{"etcd-pulled", nil},
		{"coredns-unhealthy", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile("testdata/events/" + tc.name + ".json")
			if err != nil {
				t.Fatal(err)
			}
			var e kubeEvent
			if err := json.Unmarshal(data, &e); err != nil {
				t.Fatal(err)
			}
			if got := cfg.Route.receivers(e); !slices.Equal(got, tc.want) {
				t.Errorf("sent to %q, want %q", got, tc.want)
			}
		})
	}
}
