// Command keda-check checks KEDA ScaledObjects offline, with KEDA's own code: it reads YAML
// documents (files, or standard input), decodes each ScaledObject strictly into KEDA's
// v1alpha1.ScaledObject (an unknown field is an error), runs the admission webhook's checks
// that need no cluster (triggers, replica bounds, fallback, scaling modifiers), and builds the
// scaler of every nats-jetstream trigger with KEDA's NewNATSJetStreamScaler, which parses its
// metadata and opens no connection. A missing key fails there; a key the scaler does not read
// fails here, through KEDA's own check of unexpected parameters (only a warning in KEDA).
// Other documents are skipped; no ScaledObject at all is an error.
//
// It lives in its own module so that KEDA and its dependencies stay out of remediator's go.mod;
// `make lint-deploy` builds it as bin/keda-check and runs it on the Helm chart's ScaledObject.
//
// KEDA is pinned at v2.21.0, not v2.21.1: v2.21.1's go.mod asks for Go 1.27.4, newer than any
// toolchain this project may use, and its ScaledObject fields, nats-jetstream scaler, metadata
// parser and CRD are the same as v2.21.0's (v2.21.1 adds HPA-ownership checks to the webhook,
// which need a cluster).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"github.com/kedacore/keda/v2/pkg/scalers"
	"github.com/kedacore/keda/v2/pkg/scalers/scalersconfig"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// unexpectedParams is the variable that turns on KEDA's check of trigger metadata keys no
// scaler reads; KEDA reads it once, when its scalersconfig package starts.
const unexpectedParams = "KEDA_CHECK_UNEXPECTED_SCALERS_PARAMS"

func main() {
	if os.Getenv(unexpectedParams) != "enabled" {
		// KEDA has read the variable before main runs: start again with it set.
		exe, err := os.Executable()
		if err == nil {
			err = syscall.Exec(exe, os.Args, append(os.Environ(), unexpectedParams+"=enabled"))
		}
		fmt.Fprintf(os.Stderr, "keda-check: cannot restart with %s=enabled: %v\n", unexpectedParams, err)
		os.Exit(2)
	}
	report, err := run(os.Args[1:])
	fmt.Print(report)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run checks every ScaledObject of the files named (standard input without any) and returns a
// line per ScaledObject checked.
func run(files []string) (string, error) {
	if len(files) == 0 {
		files = []string{"-"}
	}
	var report strings.Builder
	var errs []error
	found := 0
	for _, f := range files {
		data, err := read(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		docs, err := split(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		for _, doc := range docs {
			line, ok, err := check(doc)
			if !ok {
				continue
			}
			found++
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f, err))
				continue
			}
			report.WriteString(line + "\n")
		}
	}
	if found == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%s: no ScaledObject (keda.sh/v1alpha1) to check", strings.Join(files, ", ")))
	}
	return report.String(), errors.Join(errs...)
}

func read(file string) ([]byte, error) {
	if file == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(file)
}

// split returns the YAML documents of a stream that hold something.
func split(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

// check checks one document if it is a ScaledObject (ok false otherwise), and returns what it
// checked.
func check(doc []byte) (line string, ok bool, err error) {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return "", false, nil // not an object; not ours to judge
	}
	if meta.Kind != "ScaledObject" {
		return "", false, nil
	}
	id := "ScaledObject " + meta.Metadata.Namespace + "/" + meta.Metadata.Name
	if meta.APIVersion != kedav1alpha1.GroupVersion.String() {
		return "", true, fmt.Errorf("%s: apiVersion %q: KEDA serves ScaledObjects as %s", id, meta.APIVersion, kedav1alpha1.GroupVersion)
	}
	var so kedav1alpha1.ScaledObject
	if err := yaml.UnmarshalStrict(doc, &so); err != nil {
		return "", true, fmt.Errorf("%s: %w", id, err)
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{id}, args...)...))
	}
	// The decoder above turns a number or a boolean into the string KEDA's types hold; the API
	// server, checking against the CRD's schema (metadata: string values), refuses it.
	var loose struct {
		Spec struct {
			Triggers []struct {
				Metadata map[string]any `json:"metadata"`
			} `json:"triggers"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(doc, &loose); err == nil {
		for i, t := range loose.Spec.Triggers {
			for _, k := range sortedKeys(t.Metadata) {
				if _, ok := t.Metadata[k].(string); !ok {
					bad("spec.triggers[%d].metadata.%s: %v is not a string, and the CRD takes strings only: quote it", i, k, t.Metadata[k])
				}
			}
		}
	}
	// What the CRD's schema requires, and the admission webhook's checks that need no cluster.
	if so.Spec.ScaleTargetRef == nil || so.Spec.ScaleTargetRef.Name == "" {
		bad("spec.scaleTargetRef.name: required")
	}
	if err := kedav1alpha1.ValidateTriggers(so.Spec.Triggers); err != nil {
		bad("spec.triggers: %v", err)
	}
	if err := kedav1alpha1.CheckReplicaCountBoundsAreValid(&so); err != nil {
		bad("%v", err)
	}
	if err := kedav1alpha1.CheckFallbackValid(&so); err != nil {
		bad("spec.fallback: %v", err)
	}
	if so.IsUsingModifiers() {
		if _, err := kedav1alpha1.ValidateAndCompileScalingModifiers(&so); err != nil {
			bad("spec.advanced.scalingModifiers: %v", err)
		}
	}
	var built []string
	for i, t := range so.Spec.Triggers {
		at := fmt.Sprintf("spec.triggers[%d] (%s)", i, t.Type)
		if t.Name != "" {
			at = fmt.Sprintf("spec.triggers[%d] (%s %s)", i, t.Type, t.Name)
		}
		if t.Type != "nats-jetstream" {
			bad("%s: keda-check builds only nats-jetstream scalers, so this trigger would go unchecked", at)
			continue
		}
		if t.AuthenticationRef != nil {
			bad("%s: authenticationRef %s: its parameters live in the cluster, which keda-check does not read", at, t.AuthenticationRef.Name)
			continue
		}
		target, err := buildNATSJetStream(&so, i, t)
		if err != nil {
			bad("%s: %v", at, err)
			continue
		}
		built = append(built, fmt.Sprintf("%s/%s lag %s per replica", t.Metadata["stream"], t.Metadata["consumer"], target))
	}
	if len(errs) > 0 {
		return "", true, errors.Join(errs...)
	}
	min := "0"
	if so.Spec.MinReplicaCount != nil {
		min = fmt.Sprint(*so.Spec.MinReplicaCount)
	}
	return fmt.Sprintf("%s: %s %s, replicas %s..%d: %s", id, so.Spec.ScaleTargetRef.Kind, so.Spec.ScaleTargetRef.Name,
		min, so.GetHPAMaxReplicas(), strings.Join(built, ", ")), true, nil
}

// buildNATSJetStream builds the trigger's scaler as KEDA's scale handler does
// (pkg/scaling/scalers_builder.go), less what comes from the cluster (the target's environment,
// TriggerAuthentications), and returns the lag per replica it scales to.
func buildNATSJetStream(so *kedav1alpha1.ScaledObject, index int, t kedav1alpha1.ScaleTriggers) (string, error) {
	rec := &recorder{}
	cfg := &scalersconfig.ScalerConfig{
		ScalableObjectName:      so.Name,
		ScalableObjectNamespace: so.Namespace,
		ScalableObjectType:      "ScaledObject",
		TriggerName:             t.Name,
		TriggerMetadata:         t.Metadata,
		TriggerType:             t.Type,
		TriggerUseCachedMetrics: t.UseCachedMetrics,
		ResolvedEnv:             map[string]string{},
		AuthParams:              map[string]string{},
		GlobalHTTPTimeout:       3 * time.Second,
		TriggerIndex:            index,
		MetricType:              t.MetricType,
		ScaledObject:            so,
		Recorder:                rec,
	}
	s, err := scalers.NewNATSJetStreamScaler(cfg)
	if err != nil {
		return "", err
	}
	defer s.Close(context.Background())
	if len(rec.notes) > 0 {
		return "", errors.New(strings.Join(rec.notes, "; ") + " (KEDA ignores it: a misspelt key leaves its default in force)")
	}
	specs := s.GetMetricSpecForScaling(context.Background())
	if len(specs) != 1 || specs[0].External == nil {
		return "", errors.New("the scaler made no external metric")
	}
	tg := specs[0].External.Target
	switch {
	case tg.AverageValue != nil:
		return fmt.Sprint(tg.AverageValue.Value()), nil
	case tg.Value != nil:
		return fmt.Sprint(tg.Value.Value()), nil
	}
	return "", fmt.Errorf("metric target %s without a value", tg.Type)
}

// recorder keeps the events KEDA's metadata parser would record on the ScaledObject.
type recorder struct{ notes []string }

func (r *recorder) Eventf(_, _ runtime.Object, _, _, _, note string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(note, args...))
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
