package handlers

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/labstack/echo/v4"

	"github.com/remediator/remediator"
)

// kubeEvent is a core/v1 Event as kubernetes-event-exporter's webhook sink sends it: the
// Event, the exporter's clusterName, and the involved object's labels and annotations. It is
// declared here, with only the fields remediator reads, so that the intake does not depend on
// the Kubernetes API packages; unknown fields are ignored.
type kubeEvent struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name              string    `json:"name"`
		Namespace         string    `json:"namespace"`
		UID               string    `json:"uid"`
		CreationTimestamp time.Time `json:"creationTimestamp"`
	} `json:"metadata"`
	InvolvedObject struct {
		Kind        string            `json:"kind"`
		Namespace   string            `json:"namespace"`
		Name        string            `json:"name"`
		FieldPath   string            `json:"fieldPath"`
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
	ReportingComponent string    `json:"reportingComponent"`
	ReportingInstance  string    `json:"reportingInstance"`
	FirstTimestamp     time.Time `json:"firstTimestamp"`
	LastTimestamp      time.Time `json:"lastTimestamp"`
	EventTime          time.Time `json:"eventTime"`
	Count              int64     `json:"count"`
	// Series is how newer reporters count repeats instead of Count.
	Series *struct {
		Count            int64     `json:"count"`
		LastObservedTime time.Time `json:"lastObservedTime"`
	} `json:"series"`
	ClusterName string `json:"clusterName"`
}

// seedErrors are the error strings of the runbooks (the seeds): an event whose message holds
// one is a signal wherever it comes from, such as a ReplicaSet that cannot create pods because
// etcd is out of space.
var seedErrors = []string{
	"database space exceeded",
	"etcd failed: reason withheld",
	"took too long",
	"failed to find database snapshot file",
	// etcd's own words: other software's "unhealthy cluster health" is not etcd's.
	"etcdserver: unhealthy cluster",
}

// Signal names: the alertname label of the alerts that Kubernetes events become.
const (
	SignalEtcdUnhealthy      = "EtcdPodUnhealthy"
	SignalEtcdBackOff        = "EtcdPodBackOff"
	SignalAPIServerUnhealthy = "KubeAPIServerPodUnhealthy"
	SignalAPIServerBackOff   = "KubeAPIServerPodBackOff"
	SignalEtcdError          = "EtcdErrorEvent"
)

// controlPlanePods are the mirror pods of the static pods remediator looks after, by the
// prefix of their name (kubeadm names them <component>-<node>).
var controlPlanePods = []struct{ prefix, component, unhealthy, backOff string }{
	{"etcd-", "etcd", SignalEtcdUnhealthy, SignalEtcdBackOff},
	{"kube-apiserver-", "kube-apiserver", SignalAPIServerUnhealthy, SignalAPIServerBackOff},
}

func (a *api) kubernetes(c echo.Context) error {
	const source = remediator.SourceKubernetes
	res, err := a.receiveKubernetes(c)
	if err != nil {
		return a.refused(source, err)
	}
	return a.acknowledge(c, source, res)
}

func (a *api) receiveKubernetes(c echo.Context) (accepted, error) {
	r := c.Request()
	if err := a.authorize(r); err != nil {
		return accepted{}, err
	}
	body, err := readBody(c, a.MaxBodyBytes)
	if err != nil {
		return accepted{}, err
	}
	batch, ignored, rejected, err := DecodeKubernetes(body, a.Clusters, a.Now())
	if err != nil {
		return accepted{}, err
	}
	if len(batch.Alerts) == 0 {
		return accepted{Status: "ignored", Ignored: ignored, Rejected: rejected}, nil
	}
	context := MarkUntrusted(&batch, a.TrustedObjects)
	dup, err := a.enqueue(c, batch)
	if err != nil {
		return accepted{}, err
	}
	return accepted{Status: "accepted", ID: batch.ID, Duplicate: dup, Alerts: len(batch.Alerts), Context: context, Ignored: ignored, Rejected: rejected}, nil
}

// KubeObject names Kubernetes objects by namespace, kind and a prefix of their name (every
// object of the kind there when empty).
type KubeObject struct{ Namespace, Kind, NamePrefix string }

// MarkUntrusted marks the signals of objects that are neither the control plane's own pods in
// kube-system nor objects the configuration trusts as context: evidence for the incidents
// open on their cluster, never the start of one. Whoever may create pods in a namespace can
// write any message into their events, the seeds' error strings included. It returns how many
// it marked.
func MarkUntrusted(batch *remediator.Batch, trusted []KubeObject) int {
	n := 0
	for i := range batch.Alerts {
		a := &batch.Alerts[i]
		l := a.Labels
		if l["component"] != "" || slices.ContainsFunc(trusted, func(o KubeObject) bool {
			return o.Namespace == l["namespace"] && o.Kind == l["kind"] && strings.HasPrefix(l["name"], o.NamePrefix)
		}) {
			continue
		}
		a.Context = true
		n++
	}
	return n
}

// DecodeKubernetes validates a body of one Event or an array of them and turns the events that
// are signals into a batch of alerts. It also returns how many events are not signals, and why
// events for unknown clusters were refused; a body with no valid event is an EINVALID error.
// The batch is empty when no event is a signal.
func DecodeKubernetes(body []byte, clusters []string, now time.Time) (remediator.Batch, int, []string, error) {
	var events []kubeEvent
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	var err error
	if len(trimmed) > 0 && trimmed[0] == '[' {
		err = json.Unmarshal(body, &events)
	} else {
		var e kubeEvent
		err = json.Unmarshal(body, &e)
		events = []kubeEvent{e}
	}
	if err != nil {
		return remediator.Batch{}, 0, nil, remediator.Errorf(remediator.EINVALID, "%s", jsonError(body, err, "events"))
	}
	if len(events) == 0 {
		return remediator.Batch{}, 0, nil, remediator.Errorf(remediator.EINVALID, "the payload holds no events")
	}
	batch := remediator.Batch{Source: remediator.SourceKubernetes, ReceivedAt: now}
	var (
		rejected []string
		ignored  int
		ids      []string
	)
	for i, e := range events {
		what := fmt.Sprintf("events[%d]", i)
		if e.Metadata.Name != "" {
			what += " (" + e.Metadata.Namespace + "/" + e.Metadata.Name + ")"
		}
		if err := e.validate(); err != nil {
			return remediator.Batch{}, 0, nil, remediator.Errorf(remediator.EINVALID, "%s: %v", what, err)
		}
		cluster, err := resolveCluster("clusterName", e.ClusterName, e.ClusterName != "", clusters)
		if err != nil {
			rejected = append(rejected, fmt.Sprintf("%s: %v", what, err))
			continue
		}
		alert, ok := e.signal(cluster, now)
		if !ok {
			ignored++
			continue
		}
		batch.Alerts = append(batch.Alerts, alert)
		ids = append(ids, alert.Fingerprint+":"+alert.Annotations["count"])
	}
	if len(batch.Alerts) == 0 && ignored == 0 {
		return remediator.Batch{}, 0, nil, remediator.Errorf(remediator.EINVALID, "no event is for a configured cluster: %s", strings.Join(rejected, "; "))
	}
	// The same event with the same count sent again is the same message, stored once; a
	// grown count is news, which the correlator folds into the evidence it already has.
	slices.Sort(ids)
	sum := sha256.Sum256([]byte(strings.Join(ids, ",")))
	batch.ID = "k8s-" + hex.EncodeToString(sum[:16])
	return batch, ignored, rejected, nil
}

// validate says what makes the value not an Event.
func (e kubeEvent) validate() error {
	switch {
	case e.Kind != "" && e.Kind != "Event":
		return fmt.Errorf("kind %q is not Event", e.Kind)
	case e.InvolvedObject.Kind == "" || e.InvolvedObject.Name == "":
		return fmt.Errorf("involvedObject must name the object's kind and name")
	case e.Reason == "":
		return fmt.Errorf("reason must not be empty")
	case e.Metadata.UID == "" && e.Metadata.Name == "":
		return fmt.Errorf("metadata must have a uid or a name, which identify the event across its repeats")
	}
	return nil
}

// signal classifies the event: probe failures and back-offs of the control plane's mirror
// pods, and the seeds' error strings in any event. Anything else is not a signal.
func (e kubeEvent) signal(cluster string, now time.Time) (remediator.Alert, bool) {
	o := e.InvolvedObject
	labels := map[string]string{
		"cluster":   cluster,
		"namespace": cmp.Or(o.Namespace, e.Metadata.Namespace),
		"kind":      o.Kind,
		"name":      o.Name,
		"reason":    e.Reason,
	}
	if e.Type != "" {
		labels["type"] = e.Type
	}
	if o.Kind == "Pod" && labels["namespace"] == "kube-system" {
		for _, p := range controlPlanePods {
			node, ok := strings.CutPrefix(o.Name, p.prefix)
			// A mirror pod, or a pod kubeadm labelled as the component: not any pod whose
			// name starts alike (etcd-backup-28374-abcde).
			mirror := o.Annotations["kubernetes.io/config.mirror"] != "" || o.Labels["component"] == p.component
			if !ok || node == "" || !mirror {
				continue
			}
			labels["component"], labels["node"] = p.component, cmp.Or(e.Source.Host, node)
			switch e.Reason {
			case "Unhealthy":
				labels["alertname"] = p.unhealthy
			case "BackOff":
				labels["alertname"] = p.backOff
			}
		}
	}
	for _, s := range seedErrors {
		if strings.Contains(e.Message, s) {
			labels["error"] = s
			if labels["alertname"] == "" {
				labels["alertname"] = SignalEtcdError
			}
			break
		}
	}
	if labels["alertname"] == "" {
		return remediator.Alert{}, false
	}
	count := max(e.Count, 1)
	last := e.LastTimestamp
	if e.Series != nil {
		count = max(count, e.Series.Count)
		if e.Series.LastObservedTime.After(last) {
			last = e.Series.LastObservedTime
		}
	}
	first := firstNonZero(e.FirstTimestamp, e.EventTime, e.Metadata.CreationTimestamp, now)
	annotations := map[string]string{
		"message":    e.Message,
		"count":      strconv.FormatInt(count, 10),
		"first_seen": first.UTC().Format(time.RFC3339),
		"event":      e.Metadata.Namespace + "/" + e.Metadata.Name,
	}
	if !last.IsZero() {
		annotations["last_seen"] = last.UTC().Format(time.RFC3339)
	}
	if from := strings.TrimSpace(cmp.Or(e.Source.Component, e.ReportingComponent) + " " + cmp.Or(e.Source.Host, e.ReportingInstance)); from != "" {
		annotations["reported_by"] = from
	}
	if o.FieldPath != "" {
		annotations["field_path"] = o.FieldPath
	}
	// The event's identity survives its repeats, so its fingerprint does too: a growing count
	// is the same evidence, updated.
	sum := sha256.Sum256([]byte(cluster + "\x00" + cmp.Or(e.Metadata.UID, e.Metadata.Namespace+"/"+e.Metadata.Name)))
	return remediator.Alert{
		Source:      remediator.SourceKubernetes,
		Fingerprint: hex.EncodeToString(sum[:8]),
		Status:      remediator.AlertFiring,
		Cluster:     cluster,
		Labels:      labels,
		Annotations: annotations,
		StartsAt:    first,
		ReceivedAt:  now,
	}, true
}

func firstNonZero(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}
