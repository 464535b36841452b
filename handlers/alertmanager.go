package handlers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/alertmanager/template"

	"github.com/remediator/remediator"
)

// amMessage is Alertmanager's webhook payload (notify/webhook.Message), declared here so
// that only the template package, and not Alertmanager's notifiers, is a dependency.
//
// The intake decodes and encodes with encoding/json/v2's reference implementation: twice as
// fast as v1 on these payloads (see BenchmarkIngest), and stricter on untrusted input (it
// refuses duplicate keys, invalid UTF-8 and trailing data).
type amMessage struct {
	*template.Data
	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

// amVersion is the only webhook payload version Alertmanager has sent since 0.9.
const amVersion = "4"

// fingerprintRE is what a fingerprint may be: it becomes a queue key.
var fingerprintRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// accepted is the 202 body.
type accepted struct {
	Status    string `json:"status"`
	ID        string `json:"id,omitempty"`
	Duplicate bool   `json:"duplicate"`
	Alerts    int    `json:"alerts"`
	// Context counts the events kept only as evidence for incidents open on their cluster:
	// they are not the control plane's, and start nothing.
	Context int `json:"context,omitempty"`
	// Ignored counts the events that are not signals remediator acts on.
	Ignored  int      `json:"ignored,omitempty"`
	Rejected []string `json:"rejected,omitempty"`
}

func (a *api) alertmanager(c echo.Context) error {
	const source = remediator.SourceAlertmanager
	res, err := a.receiveAlertmanager(c)
	if err != nil {
		return a.refused(source, err)
	}
	return a.acknowledge(c, source, res)
}

// acknowledge counts, logs and answers what an intake took: 202 once its batch is enqueued, 200
// when there was nothing to enqueue (no event was a signal).
func (a *api) acknowledge(c echo.Context, source string, res accepted) error {
	for _, reason := range res.Rejected {
		a.Log.Warn("refused from a batch", "source", source, "batch", res.ID, "reason", reason)
	}
	if res.Alerts == 0 {
		a.webhooks.WithLabelValues(source, "ignored").Inc()
		a.Log.Debug("nothing to enqueue: no event is a signal", "source", source, "ignored", res.Ignored)
		return c.JSON(http.StatusOK, res)
	}
	outcome := "accepted"
	if res.Duplicate {
		outcome = "duplicate"
	}
	a.webhooks.WithLabelValues(source, outcome).Inc()
	a.Log.Info("enqueued", "source", source, "batch", res.ID, "alerts", res.Alerts, "ignored", res.Ignored, "duplicate", res.Duplicate)
	return c.JSON(http.StatusAccepted, res)
}

func (a *api) receiveAlertmanager(c echo.Context) (accepted, error) {
	r := c.Request()
	if err := a.authorize(r); err != nil {
		return accepted{}, err
	}
	body, err := readBody(c, a.MaxBodyBytes)
	if err != nil {
		return accepted{}, err
	}
	batch, rejected, err := DecodeAlertmanager(body, a.Clusters, a.Now())
	if err != nil {
		return accepted{}, err
	}
	dup, err := a.enqueue(c, batch)
	if err != nil {
		return accepted{}, err
	}
	return accepted{Status: "accepted", ID: batch.ID, Duplicate: dup, Alerts: len(batch.Alerts), Rejected: rejected}, nil
}

// enqueue publishes a batch durably, once per batch ID; the sender is answered only after.
func (a *api) enqueue(c echo.Context, batch remediator.Batch) (duplicate bool, err error) {
	data, err := json.Marshal(batch)
	if err != nil {
		return false, fmt.Errorf("encode batch: %w", err)
	}
	dup, err := a.Publisher.Publish(c.Request().Context(), a.AlertsSubject, data, batch.ID)
	if err != nil {
		if remediator.ErrorCode(err) == remediator.ETOOLARGE {
			return false, err
		}
		return false, remediator.Errorf(remediator.EUNAVAILABLE, "the queue cannot take the batch now, send it again: %v", err)
	}
	return dup, nil
}

// DecodeAlertmanager validates a webhook body and turns it into a batch of the alerts whose
// cluster is known. Alerts for unknown clusters are returned as rejection reasons; if no alert
// is left, that is an EINVALID error.
func DecodeAlertmanager(body []byte, clusters []string, now time.Time) (remediator.Batch, []string, error) {
	var m amMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return remediator.Batch{}, nil, remediator.Errorf(remediator.EINVALID, "%s", jsonError(body, err, ""))
	}
	if m.Version != amVersion {
		return remediator.Batch{}, nil, remediator.Errorf(remediator.EINVALID,
			"version %q is not supported: remediator takes Alertmanager webhook payloads of version %q", m.Version, amVersion)
	}
	if m.Data == nil || len(m.Alerts) == 0 {
		return remediator.Batch{}, nil, remediator.Errorf(remediator.EINVALID, "the payload holds no alerts")
	}
	batch := remediator.Batch{Source: remediator.SourceAlertmanager, Receiver: m.Receiver, GroupKey: m.GroupKey, ReceivedAt: now}
	var rejected []string
	for i, in := range m.Alerts {
		what := fmt.Sprintf("alerts[%d]", i)
		if name := in.Labels["alertname"]; name != "" {
			what += " (" + name + ")"
		}
		status := remediator.AlertStatus(in.Status)
		if status != remediator.AlertFiring && status != remediator.AlertResolved {
			return remediator.Batch{}, nil, remediator.Errorf(remediator.EINVALID, "%s: status %q must be firing or resolved", what, in.Status)
		}
		if len(in.Labels) == 0 {
			return remediator.Batch{}, nil, remediator.Errorf(remediator.EINVALID, "%s: has no labels", what)
		}
		fp := in.Fingerprint
		if fp == "" {
			fp = labelsFingerprint(in.Labels)
		} else if !fingerprintRE.MatchString(fp) {
			return remediator.Batch{}, nil, remediator.Errorf(remediator.EINVALID, "%s: fingerprint %q must be 1 to 64 letters, digits, '-' or '_'", what, fp)
		}
		name, named := in.Labels["cluster"]
		cluster, err := resolveCluster("cluster label", name, named, clusters)
		if err != nil {
			rejected = append(rejected, fmt.Sprintf("%s: %v", what, err))
			continue
		}
		batch.Alerts = append(batch.Alerts, remediator.Alert{
			Source:       remediator.SourceAlertmanager,
			Fingerprint:  fp,
			Status:       status,
			Cluster:      cluster,
			Labels:       in.Labels,
			Annotations:  in.Annotations,
			StartsAt:     in.StartsAt,
			EndsAt:       in.EndsAt,
			GeneratorURL: in.GeneratorURL,
			ReceivedAt:   now,
		})
	}
	if len(batch.Alerts) == 0 {
		return remediator.Batch{}, nil, remediator.Errorf(remediator.EINVALID, "no alert is for a configured cluster: %s", strings.Join(rejected, "; "))
	}
	batch.ID = batchID(batch.Alerts)
	return batch, rejected, nil
}

// resolveCluster takes the cluster a signal names in its field, or the only configured
// cluster when it names none.
func resolveCluster(field, name string, named bool, clusters []string) (string, error) {
	switch {
	case named && slices.Contains(clusters, name):
		return name, nil
	case named:
		return "", fmt.Errorf("unknown cluster %q (configured: %s); to take it, add it as clusters[].name, with its etcd.endpoints, to the file given to --config",
			name, strings.Join(clusters, ", "))
	case len(clusters) == 1:
		return clusters[0], nil
	}
	return "", fmt.Errorf("no %s, and %d clusters are configured (%s): add a %s", field, len(clusters), strings.Join(clusters, ", "), field)
}

// batchID derives the message ID from what the alerts are, whether they fire and since when:
// the same notification sent again is the same message, and is stored once, while an alert
// that fires again after resolving is news.
func batchID(alerts []remediator.Alert) string {
	parts := make([]string, len(alerts))
	for i, a := range alerts {
		parts[i] = a.Fingerprint + ":" + string(a.Status) + ":" + a.StartsAt.UTC().Format(time.RFC3339Nano)
	}
	slices.Sort(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, ",")))
	return "am-" + hex.EncodeToString(sum[:16])
}

// labelsFingerprint stands in for Alertmanager's fingerprint when a sender leaves it out.
func labelsFingerprint(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s\xff%s\xff", k, labels[k])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// jsonError says what is wrong with the payload and where, by line and column, in the
// payload's terms (its fields, kinds of JSON value), not Go's. items names the elements of a
// payload that may be an array ("events"), to name their fields.
func jsonError(body []byte, err error, items string) string {
	var syntax *jsontext.SyntacticError
	var semantic *json.SemanticError
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return "the payload is empty: it must be JSON"
	case errors.As(err, &syntax):
		where := jsonPosition(body, syntax.ByteOffset)
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			return where + ": malformed JSON: the payload ends early, cut short"
		case errors.Is(syntax.Err, jsontext.ErrDuplicateName):
			return fmt.Sprintf("%s: malformed JSON: field %s appears twice", where, jsonField(syntax.JSONPointer, items))
		case syntax.JSONPointer != "":
			return fmt.Sprintf("%s: malformed JSON in field %s: %v", where, jsonField(syntax.JSONPointer, items), syntax.Err)
		}
		return fmt.Sprintf("%s: malformed JSON: %v", where, syntax.Err)
	case errors.As(err, &semantic):
		where := jsonPosition(body, semantic.ByteOffset)
		kind, want := jsonWant(semantic.GoType)
		got := jsonKind(semantic.JSONKind)
		if semantic.JSONPointer == "" {
			if items != "" {
				want += ", or an array of them"
			}
			return fmt.Sprintf("%s: the payload must be %s, not %s", where, want, got)
		}
		field := jsonField(semantic.JSONPointer, items)
		if kind == semantic.JSONKind {
			// The right kind of value, but not one the field takes: say which it is.
			value, _ := jsontext.NewDecoder(bytes.NewReader(body[min(semantic.ByteOffset, int64(len(body))):])).ReadValue()
			return fmt.Sprintf("%s: field %s: %s is not %s", where, field, value, want)
		}
		return fmt.Sprintf("%s: field %s must be %s, not %s", where, field, want, got)
	}
	return fmt.Sprintf("malformed JSON: %v", err)
}

// jsonPosition is where byte offset off of body is, as an editor counts: line and column from 1.
func jsonPosition(body []byte, off int64) string {
	before := body[:min(max(off, 0), int64(len(body)))]
	line := bytes.Count(before, []byte("\n")) + 1
	col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return fmt.Sprintf("line %d, column %d", line, col)
}

// jsonField names the field at a JSON pointer as the payload spells it: alerts[0].labels.
func jsonField(p jsontext.Pointer, items string) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		_, err := strconv.Atoi(tok)
		switch {
		case err == nil && b.Len() == 0 && items != "":
			fmt.Fprintf(&b, "%s[%s]", items, tok)
		case err == nil:
			fmt.Fprintf(&b, "[%s]", tok)
		case identRE.MatchString(tok):
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(tok)
		default:
			fmt.Fprintf(&b, "[%q]", tok)
		}
	}
	return b.String()
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// jsonWant names the JSON value a Go type decodes from, and its kind (0 for true or false,
// two kinds).
func jsonWant(t reflect.Type) (jsontext.Kind, string) {
	switch {
	case t == nil:
		return 0, "another value"
	case t == reflect.TypeFor[time.Time]():
		return '"', "an RFC 3339 time such as 2026-11-21T09:58:11Z"
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return '[', "an array"
	case reflect.Map, reflect.Struct:
		return '{', "an object"
	case reflect.String:
		return '"', "a string"
	case reflect.Bool:
		return 0, "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return '0', "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return '0', "a whole number, 0 or more"
	}
	return '0', "a number"
}

// jsonKind names a kind of JSON value.
func jsonKind(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 't', 'f':
		return k.String()
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "another value"
}
