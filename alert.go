package remediator

import (
	"strings"
	"time"
)

// AlertStatus is whether an alert is firing or resolved, as Alertmanager says it.
type AlertStatus string

// The two statuses Alertmanager sends.
const (
	AlertFiring   AlertStatus = "firing"
	AlertResolved AlertStatus = "resolved"
)

// The sources of alerts. Only Alertmanager says when an alert resolves; the others report
// occurrences, which never resolve.
const (
	SourceAlertmanager = "alertmanager"
	SourceKubernetes   = "kubernetes"
)

// Alert is one signal that something is wrong with a cluster, normalised from its source: an
// Alertmanager alert, a Kubernetes event, or a lost guarded key.
type Alert struct {
	Source       string            `json:"source"`
	Fingerprint  string            `json:"fingerprint"`
	Status       AlertStatus       `json:"status"`
	Cluster      string            `json:"cluster"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"starts_at,omitzero"`
	EndsAt       time.Time         `json:"ends_at,omitzero"`
	GeneratorURL string            `json:"generator_url,omitempty"`
	ReceivedAt   time.Time         `json:"received_at"`
	// LastSeenAt is when the source last sent the alert again, with what it says now.
	LastSeenAt time.Time `json:"last_seen_at,omitzero"`
	// Context marks a signal that says something is wrong but not what (a probe failure, a
	// back-off): evidence around an incident, not its cause, so it does not start its clock.
	Context bool `json:"context,omitempty"`
}

// seen is when the alert was last heard of.
func (a Alert) seen() time.Time {
	if a.LastSeenAt.After(a.ReceivedAt) {
		return a.LastSeenAt
	}
	return a.ReceivedAt
}

// Name is the alert's name (its alertname label).
func (a Alert) Name() string { return a.Labels["alertname"] }

// Text is every label and annotation value on one line each, so that a policy can look for
// an error string wherever the alert carries it.
func (a Alert) Text() string {
	var b strings.Builder
	for _, m := range []map[string]string{a.Labels, a.Annotations} {
		for _, v := range m {
			b.WriteString(v)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Resolves says whether the alert's source will say when it is over: an incident waits for
// such alerts to resolve before it closes.
func (a Alert) Resolves() bool { return a.Source == SourceAlertmanager }

// key identifies one observation of an alert: the same alert re-sent is the same key.
func (a Alert) key() string {
	return a.Fingerprint + "/" + string(a.Status) + "/" + a.StartsAt.UTC().Format(time.RFC3339Nano)
}

// Batch is what an intake handler enqueues: the alerts of one webhook request.
type Batch struct {
	ID         string    `json:"id"`
	Source     string    `json:"source"`
	Receiver   string    `json:"receiver,omitempty"`
	GroupKey   string    `json:"group_key,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
	Alerts     []Alert   `json:"alerts"`
}
