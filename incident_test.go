package remediator

import (
	"encoding/json"
	"testing"
	"time"
)

func TestStepProgress(t *testing.T) {
	inc := Incident{Steps: []Step{
		{Name: "snapshot", Progress: json.RawMessage(`{"revision":42}`)},
		{Name: "compact"},
		{Name: "broken", Progress: json.RawMessage(`{"revision":`)},
	}}
	var p struct{ Revision int64 }
	if !inc.StepProgress("snapshot", &p) || p.Revision != 42 {
		t.Fatalf("snapshot progress: %+v", p)
	}
	for _, step := range []string{"compact", "broken", "absent"} {
		if inc.StepProgress(step, &p) {
			t.Errorf("%s: reported progress", step)
		}
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
