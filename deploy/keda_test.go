package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/remediator/remediator/queue"
)

// kedaCheck is the tool that checks ScaledObjects with KEDA's own types and scalers
// (tools/keda), as `make lint-deploy` builds it.
var kedaCheck = builtTool{env: "REMEDIATOR_KEDA_CHECK_BIN", bin: "keda-check"}

// kedaOperator is KEDA's operator as its Helm chart labels it, in the namespace its docs install
// it in: it reads the NATS servers' monitoring port for the nats-jetstream scaler.
var kedaOperator = peer{name: "KEDA's operator (pods labelled app.kubernetes.io/name=keda-operator in namespace keda)",
	namespace: "keda", labels: map[string]string{"app.kubernetes.io/name": "keda-operator"}}

// scaledObject is a KEDA ScaledObject as far as the lint's own checks read it: bin/keda-check
// decodes it strictly into KEDA's types.
type scaledObject struct {
	raw  []byte
	Spec struct {
		ScaleTargetRef *struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		Triggers        []struct {
			Type     string            `json:"type"`
			Name     string            `json:"name"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

func decodeScaledObject(data []byte) (any, error) {
	so := &scaledObject{raw: data}
	if err := yaml.Unmarshal(data, so); err != nil {
		return nil, err
	}
	return so, nil
}

// streamConsumer is a durable consumer of a JetStream stream.
type streamConsumer struct{ stream, consumer string }

func (c streamConsumer) String() string { return c.stream + "/" + c.consumer }

// queueConsumers are the durable consumers remediator's queue creates, as a NATS server lists
// them on its monitoring endpoint (/jsz, which KEDA's nats-jetstream scaler reads): queue.Open
// on an in-process nats-server with JetStream. Every one of them is served by the workers
// (serve --role intake holds none).
var queueConsumers = sync.OnceValues(func() ([]streamConsumer, error) {
	dir, err := os.MkdirTemp("", "lint-deploy-jetstream-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, errors.New("nats-server: not ready after 10s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := queue.Open(ctx, queue.Options{URL: ns.ClientURL(), Insecure: true})
	if err != nil {
		return nil, fmt.Errorf("queue.Open on an in-process nats-server: %w", err)
	}
	defer q.Close()
	jsz, err := ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true, Config: true})
	if err != nil {
		return nil, fmt.Errorf("nats-server /jsz: %w", err)
	}
	var out []streamConsumer
	for _, acc := range jsz.AccountDetails {
		for _, st := range acc.Streams {
			for _, c := range st.Consumer {
				if c.Config != nil && c.Config.Durable != "" {
					out = append(out, streamConsumer{st.Name, c.Name})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b streamConsumer) int { return strings.Compare(a.String(), b.String()) })
	if len(out) == 0 {
		return nil, errors.New("remediator's queue created no durable consumer")
	}
	return out, nil
})

// checkScaledObjects checks the build's ScaledObjects: strictly, with KEDA's own code
// (bin/keda-check), and for what KEDA cannot know: that they scale serve's workers and nothing
// else, that the workers' Deployment leaves its replicas to KEDA, that there is one trigger for
// each consumer the workers serve and none for another, that no worker means no key guard, and
// that KEDA reaches the NATS servers' monitoring port.
func (d *deployment) checkScaledObjects() []error {
	var sos []object
	for _, o := range d.objects {
		if _, ok := o.value.(*scaledObject); ok {
			sos = append(sos, o)
		}
	}
	if len(sos) == 0 {
		return nil
	}
	var errs []error
	var docs [][]byte
	for _, o := range sos {
		docs = append(docs, o.value.(*scaledObject).raw)
	}
	if err := runKEDACheck(docs); err != nil {
		errs = append(errs, err)
	}
	consumers, err := queueConsumers()
	if err != nil {
		return append(errs, err)
	}
	for _, o := range sos {
		so := o.value.(*scaledObject)
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%v: %s", o, fmt.Sprintf(format, args...)))
		}
		if t := so.Spec.ScaleTargetRef; t != nil && (t.Kind == "" || t.Kind == "Deployment") {
			target, ok := d.find("Deployment", o.namespace, t.Name)
			if !ok {
				bad("scales Deployment %s/%s, which is not in the build", o.namespace, t.Name)
			} else {
				dep := target.value.(*appsv1.Deployment)
				if !slices.ContainsFunc(dep.Spec.Template.Spec.Containers, isServeWorker) {
					bad("scales %v, which does not run serve --role worker: only the workers may scale to zero (the intake answers Alertmanager, which gives up after 10 s)", target)
				}
				if dep.Spec.Replicas != nil {
					bad("%v sets replicas %d: every helm upgrade would reset what KEDA scaled it to (leave replicas out)", target, *dep.Spec.Replicas)
				}
			}
		}
		var got []streamConsumer
		for _, t := range so.Spec.Triggers {
			if t.Type == "nats-jetstream" {
				got = append(got, streamConsumer{t.Metadata["stream"], t.Metadata["consumer"]})
			}
		}
		for _, c := range consumers {
			if !slices.Contains(got, c) {
				bad("no nats-jetstream trigger for consumer %v, which the workers serve: its messages would wait for a worker that never comes", c)
			}
		}
		for _, c := range got {
			if c.stream != "" && c.consumer != "" && !slices.Contains(consumers, c) { // keda-check reports a missing one
				bad("a trigger names consumer %v, which remediator's queue does not create (%s): KEDA would find no lag there", c, joinStrings(consumers))
			}
		}
		if min := so.Spec.MinReplicaCount; (min == nil || *min == 0) && d.serve != nil {
			for _, cl := range d.serve.Clusters {
				if len(cl.GuardedKeys) > 0 {
					bad("minReplicaCount 0, and cluster %s has guarded_keys, which the workers watch: with none running a lost key goes unseen", cl.Name)
				}
			}
		}
		// Where the build holds the NATS namespace (its NetworkPolicies), KEDA must get through.
		if d.serve != nil {
			if _, natsNS, ok := natsService(d.serve.NATS.URL); ok {
				if _, here := d.find("Namespace", "", natsNS); here && !d.admits(natsNS, natsPodLabels("nats"), natsMonitorPort, kedaOperator) {
					bad("the NetworkPolicies of namespace %s keep %s from the NATS servers' port %v, where its nats-jetstream scaler reads the lag: the workers would never scale", natsNS, kedaOperator.name, natsMonitorPort)
				}
			}
		}
	}
	return errs
}

// isServeWorker says whether a container runs serve --role worker.
func isServeWorker(c corev1.Container) bool {
	role, _ := flag(c.Args, "role")
	return remediatorCommand(c) == "serve" && role == "worker"
}

func joinStrings[T fmt.Stringer](xs []T) string {
	var s []string
	for _, x := range xs {
		s = append(s, x.String())
	}
	return strings.Join(s, ", ")
}

// runKEDACheck runs bin/keda-check on ScaledObjects; its errors name each object and field.
func runKEDACheck(docs [][]byte) error {
	bin, err := kedaCheck.path()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin)
	cmd.Stdin = bytes.NewReader(bytes.Join(docs, []byte("\n---\n")))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		out := strings.TrimSpace(strings.ReplaceAll(stderr.String(), "-: ", ""))
		if out == "" {
			out = err.Error()
		}
		return fmt.Errorf("keda-check: %s", out)
	}
	return nil
}
