package remediator

import (
	"encoding/json"
	"testing"
	"time"
)

func TestFindingsAndProgress(t *testing.T) {
	inc := Incident{Steps: []Step{
		{Name: "snapshot", Progress: json.RawMessage(`{"revision":42}`)},
		{Name: "compact"},
		{Name: "broken", Progress: json.RawMessage(`{"revision":`)},
	}}
	type saved struct{ Revision int64 }
	if p, ok, err := Findings[saved](inc, "snapshot"); !ok || err != nil || p.Revision != 42 {
		t.Fatalf("snapshot findings: %+v %v %v", p, ok, err)
	}
	for _, step := range []string{"compact", "absent"} {
		if _, ok, err := Findings[saved](inc, step); ok || err != nil {
			t.Errorf("%s: findings %v, %v; want none and no error", step, ok, err)
		}
	}
	if _, ok, err := Findings[saved](inc, "broken"); ok || ErrorCode(err) != EPRECONDITION {
		t.Errorf("unreadable findings: %v, %v; want EPRECONDITION", ok, err)
	}
	if p, ok, err := Progress[saved](StepInput{Progress: json.RawMessage(`{"revision":7}`)}); !ok || err != nil || p.Revision != 7 {
		t.Errorf("progress: %+v %v %v", p, ok, err)
	}
	if _, ok, err := Progress[saved](StepInput{}); ok || err != nil {
		t.Errorf("no progress: %v %v", ok, err)
	}
}

func TestAnIncidentClosesWhenItIsOverAndItsAlertsResolved(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	firing := Alert{Source: SourceAlertmanager, Fingerprint: "a1", Status: AlertFiring, Labels: map[string]string{"alertname": "etcdDatabaseQuotaLowSpace"}, StartsAt: t0, ReceivedAt: at(1)}
	resolved := firing
	resolved.Status, resolved.EndsAt, resolved.ReceivedAt = AlertResolved, at(50), at(60)
	event := Alert{Source: SourceKubernetes, Fingerprint: "k1", Status: AlertFiring, Labels: map[string]string{"alertname": "EtcdPodBackOff"}, StartsAt: t0, ReceivedAt: at(2)}

	for _, tc := range []struct {
		name       string
		evidence   [][]Alert
		state      State
		wantClosed time.Time
	}{
		{"succeeded, alert firing", [][]Alert{{firing, event}}, StateSucceeded, time.Time{}},
		{"succeeded, then the alert resolved", [][]Alert{{firing, event}, {resolved}}, StateSucceeded, at(60)},
		{"resolved before it finished", [][]Alert{{firing, resolved}}, StateFailed, at(30)},
		{"events only: nothing resolves them", [][]Alert{{event}}, StateFailed, at(30)},
		{"still running", [][]Alert{{firing}, {resolved}}, StateRunning, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inc := NewIncident("i", "prod", Decision{Remediation: "r"}, at(1))
			inc.AddEvidence(tc.evidence[0])
			inc.SetState(tc.state, "", at(30))
			for _, more := range tc.evidence[1:] {
				inc.AddEvidence(more)
			}
			if !inc.ClosedAt.Equal(tc.wantClosed) {
				t.Errorf("closed at %v, want %v", inc.ClosedAt, tc.wantClosed)
			}
			closes := 0
			for _, e := range inc.Timeline {
				if e.Kind == EventClosed {
					closes++
				}
			}
			if want := map[bool]int{true: 0, false: 1}[tc.wantClosed.IsZero()]; closes != want {
				t.Errorf("%d closed events in the timeline, want %d", closes, want)
			}
		})
	}
}

func TestARepeatedSignalUpdatesItsEvidence(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	e := Alert{Source: SourceKubernetes, Fingerprint: "k1", Status: AlertFiring, StartsAt: t0, ReceivedAt: t0,
		Labels: map[string]string{"alertname": "EtcdPodBackOff"}, Annotations: map[string]string{"count": "2"}}
	inc := NewIncident("i", "prod", Decision{Remediation: "r"}, t0)
	inc.AddEvidence([]Alert{e})
	later := e
	later.Annotations, later.ReceivedAt = map[string]string{"count": "5"}, t0.Add(time.Minute)
	inc.AddEvidence([]Alert{later})
	inc.AddEvidence([]Alert{e}) // an older copy, redelivered, does not win
	if len(inc.Evidence) != 1 || inc.Evidence[0].Annotations["count"] != "5" || len(inc.Timeline) != 2 {
		t.Errorf("evidence %+v, %d timeline events: want one signal with count 5, recorded once", inc.Evidence, len(inc.Timeline))
	}
}

func TestTheLatestWordOnAnAlertDoesNotDependOnArrivalOrder(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	firing := Alert{Source: SourceAlertmanager, Fingerprint: "a1", Status: AlertFiring, StartsAt: t0, ReceivedAt: t0.Add(2 * time.Second)}
	resolved := firing
	resolved.Status, resolved.ReceivedAt = AlertResolved, t0.Add(time.Second) // stored first: redelivered late
	inc := NewIncident("i", "prod", Decision{Remediation: "r"}, t0)
	inc.AddEvidence([]Alert{resolved})
	inc.AddEvidence([]Alert{firing})
	inc.SetState(StateSucceeded, "", t0.Add(time.Minute))
	if !inc.Closed() {
		t.Errorf("the resolved observation stored before the firing one of the same start is not the latest word")
	}
	again := firing
	again.StartsAt = t0.Add(time.Hour) // fired again, later: news
	inc.AddEvidence([]Alert{again})
	if inc.AlertsResolved() {
		t.Errorf("an alert that fired again after resolving counts as resolved")
	}
}

func TestALateCopyOfAnEventDoesNotUndoANewerCount(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	copyAt := func(count string, s int) Alert {
		return Alert{Source: SourceKubernetes, Fingerprint: "k1", Status: AlertFiring, StartsAt: t0, ReceivedAt: t0.Add(time.Duration(s) * time.Second),
			Labels: map[string]string{"alertname": "EtcdPodBackOff"}, Annotations: map[string]string{"count": count}}
	}
	inc := NewIncident("i", "prod", Decision{Remediation: "r"}, t0)
	for _, a := range []Alert{copyAt("2", 1), copyAt("5", 30), copyAt("3", 20)} {
		inc.AddEvidence([]Alert{a})
	}
	if got := inc.Evidence[0]; got.Annotations["count"] != "5" || !got.ReceivedAt.Equal(t0.Add(time.Second)) {
		t.Errorf("count %s, received %v: want the newest count 5 and the first receipt kept", got.Annotations["count"], got.ReceivedAt)
	}
}
