package worker

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
)

// signal is a Kubernetes event as the intake classifies it: its fingerprint is the event's,
// and its count grows while it repeats.
func signal(fp, cluster, name, message string, count int) remediator.Alert {
	return remediator.Alert{
		Source: remediator.SourceKubernetes, Fingerprint: fp, Status: remediator.AlertFiring, Cluster: cluster,
		Labels:      map[string]string{"alertname": name, "cluster": cluster, "component": "etcd", "node": "cp1"},
		Annotations: map[string]string{"message": message, "count": strconv.Itoa(count)},
		StartsAt:    time.Date(2026, 11, 21, 9, 58, 0, 0, time.UTC), ReceivedAt: time.Now(),
	}
}

func evidenceOf(inc *remediator.Incident, fp string) []remediator.Alert {
	var out []remediator.Alert
	for _, a := range inc.Evidence {
		if a.Fingerprint == fp {
			out = append(out, a)
		}
	}
	return out
}

func TestSignalsAroundAnAlertJoinItsIncident(t *testing.T) {
	f := newFixture(t, remediator.PlannedStep{Name: "one", Run: ok("")})
	probe := signal("k-probe", "prod", "EtcdPodUnhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 503", 3)
	f.correlate(t, probe)
	f.correlate(t, signal("k-elsewhere", "canary", "EtcdPodUnhealthy", "Liveness probe failed", 1))
	if n := len(f.incidents(t)); n != 0 {
		t.Fatalf("%d incidents from probe failures alone, want none: they say something is wrong, not what", n)
	}

	f.correlate(t, alert("a1", "prod", "firing"))
	inc := f.only(t)
	if len(evidenceOf(inc, "k-probe")) != 1 || len(evidenceOf(inc, "a1")) != 1 {
		t.Fatalf("evidence %+v: want the alert and the probe failure before it", inc.Evidence)
	}
	if len(evidenceOf(inc, "k-elsewhere")) != 0 {
		t.Errorf("a signal of another cluster joined the incident")
	}
	if got, want := inc.ReceivedAt(), evidenceOf(inc, "a1")[0].ReceivedAt; !got.Equal(want) {
		t.Errorf("the incident's clock starts at %v, want the alert's %v: the probe failure around it is no cause", got, want)
	}

	backoff := signal("k-backoff", "prod", "EtcdPodBackOff", "Back-off restarting failed container etcd", 1)
	f.correlate(t, backoff)
	backoff.Annotations = map[string]string{"message": backoff.Annotations["message"], "count": "7"}
	backoff.ReceivedAt = time.Now()
	f.correlate(t, backoff)
	inc = f.only(t)
	got := evidenceOf(inc, "k-backoff")
	if len(got) != 1 || got[0].Annotations["count"] != "7" {
		t.Errorf("the back-off's evidence is %+v: want it once, with the grown count 7", got)
	}
	if n := strings.Count(timelineText(inc), "EtcdPodBackOff"); n != 1 {
		t.Errorf("the back-off is in the timeline %d times, want once", n)
	}
}

func TestAnEventWithASeedErrorJoinsTheAlertsIncidentOnce(t *testing.T) {
	policies := strings.Replace(testPolicies, `match: labels.alertname == "TestAlert"`,
		`match: labels.alertname == "TestAlert" || text.contains("database space exceeded")`, 1)
	f := newFixtureWith(t, policies, remediator.PlannedStep{Name: "one", Run: ok("")})
	f.correlate(t, alert("a1", "prod", "firing"))
	event := signal("k-nospace", "prod", "EtcdErrorEvent", "Error creating: etcdserver: mvcc: database space exceeded", 2)
	f.correlate(t, event)
	inc := f.only(t)
	if len(evidenceOf(inc, "k-nospace")) != 1 {
		t.Fatalf("evidence %+v: want the alert and the event in one incident", inc.Evidence)
	}
	if err := f.execute(t, inc.ID); err != nil {
		t.Fatal(err)
	}
	// The event goes on repeating after the recovery: it is the same event, not a new
	// incident.
	event.Annotations = map[string]string{"message": event.Annotations["message"], "count": "9"}
	event.ReceivedAt = time.Now()
	f.correlate(t, event)
	inc = f.only(t)
	if got := evidenceOf(inc, "k-nospace"); len(got) != 1 || got[0].Annotations["count"] != "9" {
		t.Errorf("after the repeat the event's evidence is %+v, want it once with count 9", got)
	}
	if inc.State != remediator.StateSucceeded || inc.Closed() {
		t.Errorf("incident %s, closed at %v: want succeeded and open while its alert fires", inc.State, inc.ClosedAt)
	}
	f.correlate(t, alert("a1", "prod", "resolved"))
	if inc = f.only(t); !inc.Closed() || !strings.Contains(timelineText(inc), "closed: every alert of the incident resolved") {
		t.Errorf("after the alert resolved: closed at %v, timeline %s; want closed", inc.ClosedAt, timelineText(inc))
	}
}

func timelineText(inc *remediator.Incident) string {
	var b strings.Builder
	for _, e := range inc.Timeline {
		b.WriteString(e.Kind + " " + e.Message + "\n")
	}
	return b.String()
}

// Members' alerts resolve one evaluation apart, so Alertmanager's next notification after a
// recovery holds some resolved and some still firing, as sent before: that is no new problem.
func TestAPartlyResolvedNotificationAfterTheRecoveryOpensNothing(t *testing.T) {
	f := newFixture(t, remediator.PlannedStep{Name: "one", Run: ok("")})
	f.correlate(t, alert("m1", "prod", "firing"), alert("m2", "prod", "firing"))
	id := f.only(t).ID
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	f.correlate(t, alert("m1", "prod", "resolved"), alert("m2", "prod", "firing"))
	if all := f.incidents(t); len(all) != 1 {
		t.Fatalf("%d incidents after a partly resolved notification, want the one: %s opened", len(all), all[0].ID)
	}
	if inc := f.only(t); inc.Closed() {
		t.Fatalf("closed while m2 fires")
	}
	f.correlate(t, alert("m2", "prod", "resolved"))
	if inc := f.only(t); inc.ID != id || !inc.Closed() {
		t.Errorf("incident %s closed at %v: want %s closed once m2 resolved", inc.ID, inc.ClosedAt, id)
	}
}

// A notification may resolve one alert while a new one fires beside it: the resolved one goes
// to its own incident, and closes it.
func TestAResolvedAlertBesideANewOneClosesItsOwnIncident(t *testing.T) {
	f := newFixture(t, remediator.PlannedStep{Name: "one", Run: ok("")})
	f.correlate(t, alert("a", "prod", "firing"))
	first := f.only(t).ID
	if err := f.execute(t, first); err != nil {
		t.Fatal(err)
	}
	f.correlate(t, alert("a", "prod", "resolved"), alert("b", "prod", "firing"))
	for _, inc := range f.incidents(t) {
		switch {
		case inc.ID == first && !inc.Closed():
			t.Errorf("incident %s is not closed after its alert resolved: evidence %+v", inc.ID, inc.Evidence)
		case inc.ID != first && len(evidenceOf(inc, "a")) > 0:
			t.Errorf("the new incident %s took the resolved alert of %s", inc.ID, first)
		}
	}
}

func TestAnAlertStillFiringLongAfterASuccessIsToldOnce(t *testing.T) {
	f := newFixture(t, remediator.PlannedStep{Name: "one", Run: ok("")})
	a := alert("a", "prod", "firing")
	f.correlate(t, a)
	if err := f.execute(t, f.only(t).ID); err != nil {
		t.Fatal(err)
	}
	f.correlate(t, a) // Alertmanager re-sends it soon: nothing to say yet
	if n := strings.Count(timelineText(f.only(t)), "still fires"); n != 0 {
		t.Fatalf("told %d times right after the success", n)
	}
	later := time.Now().Add(time.Hour)
	f.w.Now = func() time.Time { return later }
	f.correlate(t, a)
	f.correlate(t, a)
	inc := f.only(t)
	if n := strings.Count(timelineText(inc), "TestAlert (fingerprint a) still fires"); n != 1 {
		t.Errorf("told %d times an hour after the success, want once:\n%s", n, timelineText(inc))
	}
}

func TestAnOperatorClosesAFinishedIncidentWhoseAlertNeverResolves(t *testing.T) {
	f := newFixture(t, remediator.PlannedStep{Name: "one", Run: ok("")})
	f.correlate(t, alert("a", "prod", "firing"))
	id := f.only(t).ID
	if _, err := f.w.Close(context.Background(), id, "carol", "silenced"); remediator.ErrorCode(err) != remediator.EREFUSED {
		t.Errorf("closing a pending incident: %v, want refused", err)
	}
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	if _, err := f.w.Close(context.Background(), id, "carol", " "); remediator.ErrorCode(err) != remediator.EINVALID {
		t.Errorf("closing without a reason: %v, want invalid", err)
	}
	inc, err := f.w.Close(context.Background(), id, "carol", "alert silenced for the disk swap")
	if err != nil || !inc.Closed() || !strings.Contains(timelineText(inc), "closed by carol with 1 alert(s) still firing: alert silenced for the disk swap") {
		t.Fatalf("close: %v, closed at %v:\n%s", err, inc.ClosedAt, timelineText(inc))
	}
	if again, err := f.w.Close(context.Background(), id, "dave", "again"); err != nil || !again.ClosedAt.Equal(inc.ClosedAt) {
		t.Errorf("closing again: %v, closed at %v; want the first close kept", err, again.ClosedAt)
	}
}

func TestAContextAlertIsEvidenceAndOpensNothing(t *testing.T) {
	policies := strings.Replace(testPolicies, "policies:\n", `policies:
  - name: slow-disk
    match: labels.alertname == "etcdHighFsyncDurations"
    mode: context
`, 1)
	f := newFixtureWith(t, policies, remediator.PlannedStep{Name: "one", Run: ok("")})
	f.correlate(t, alert("disk", "prod", "firing", "alertname", "etcdHighFsyncDurations"))
	if n := len(f.incidents(t)); n != 0 {
		t.Fatalf("%d incidents from a slow-disk alert alone, want none: it explains, it asks for nothing", n)
	}
	f.correlate(t, alert("a1", "prod", "firing"))
	inc := f.only(t)
	if len(evidenceOf(inc, "disk")) != 1 || len(evidenceOf(inc, "a1")) != 1 {
		t.Fatalf("evidence %+v: want the alert and the slow-disk alert before it", inc.Evidence)
	}
	if got, want := inc.ReceivedAt(), evidenceOf(inc, "a1")[0].ReceivedAt; !got.Equal(want) {
		t.Errorf("the incident's clock starts at %v, want the alert's %v: the context before it is no cause", got, want)
	}
}
