package queue

import (
	"context"
	"testing"
	"time"

	"github.com/remediator/remediator"
)

// Closed incidents past the retention move to the archive: still readable, no longer in the
// incidents bucket, their traces dropped; open and recent ones stay.
func TestClosedIncidentsPastTheRetentionMoveToTheArchive(t *testing.T) {
	q := openQueue(t, Options{})
	ctx := context.Background()
	now := time.Now()
	old := now.Add(-40 * 24 * time.Hour)
	for _, id := range []string{"old-closed", "old-open", "recent-closed"} {
		created := old
		if id == "recent-closed" {
			created = now.Add(-time.Hour)
		}
		if err := q.Incidents.Create(ctx, remediator.NewIncident(id, "prod", remediator.Decision{Remediation: "r", Policy: "p"}, created)); err != nil {
			t.Fatal(err)
		}
		a := remediator.Arrival{Batch: "b-" + id, Alert: remediator.Alert{Source: "kubernetes", Fingerprint: "fp-" + id, Status: remediator.AlertFiring, ReceivedAt: created}}
		if _, err := q.Incidents.Join(ctx, id, []remediator.Arrival{a}, nil, nil); err != nil {
			t.Fatal(err)
		}
		if id == "old-open" {
			continue
		}
		if _, err := q.Incidents.Update(ctx, id, func(inc *remediator.Incident) error {
			inc.SetState(remediator.StateSucceeded, "", created.Add(time.Minute)) // no alert resolves: closed at once
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := q.Archive(ctx, 30*24*time.Hour, now)
	if err != nil || n != 1 {
		t.Fatalf("archived %d (%v), want 1", n, err)
	}
	inc, err := q.Incidents.Get(ctx, "old-closed")
	if err != nil || inc.EvidenceCount != 1 || !inc.Closed() {
		t.Fatalf("archived incident: %+v, %v; want it readable as it was", inc, err)
	}
	if _, err := q.Incidents.incidents.Get(ctx, "old-closed"); err == nil {
		t.Error("the archived incident is still in the incidents bucket")
	}
	if holds, err := q.Incidents.HoldsAlert(ctx, "old-closed", remediator.Alert{Fingerprint: "fp-old-closed", Status: remediator.AlertFiring, StartsAt: time.Time{}}); err != nil || holds {
		t.Errorf("the archived incident's trace: holds %v, %v; want dropped", holds, err)
	}
	if _, err := q.Incidents.Update(ctx, "old-closed", func(*remediator.Incident) error { return nil }); remediator.ErrorCode(err) != remediator.EREFUSED {
		t.Errorf("update of an archived incident: %v, want refused", err)
	}
	for _, id := range []string{"old-open", "recent-closed"} {
		if _, err := q.Incidents.incidents.Get(ctx, id); err != nil {
			t.Errorf("%s left the incidents bucket: %v", id, err)
		}
	}
	page, err := q.Incidents.List(ctx, remediator.Query{})
	if err != nil || len(page.Incidents) != 3 {
		t.Errorf("list: %d incidents (%v), want all 3, archived or not", len(page.Incidents), err)
	}
	// A second pass starts where the first stopped, and archives nothing more.
	if n, err := q.Archive(ctx, 30*24*time.Hour, now); err != nil || n != 0 {
		t.Errorf("second pass archived %d (%v), want 0", n, err)
	}
}
