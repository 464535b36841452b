package report

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// recovered is a NOSPACE incident as the remediation leaves it, with fixed times.
func recovered() *remediator.Incident {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	inc := remediator.NewIncident("20261121-100000-abc123", "prod",
		remediator.Decision{Policy: "etcd-nospace", Remediation: "etcd-nospace-recovery", Mode: remediator.ModeAuto}, at(2))
	inc.AddEvidence([]remediator.Alert{{
		Source: "alertmanager", Fingerprint: "1c3a5f0d7e2b9a41", Status: remediator.AlertFiring, Cluster: "prod",
		Labels:      map[string]string{"alertname": "etcdDatabaseQuotaLowSpace", "instance": "10.0.0.11:2379"},
		Annotations: map[string]string{"summary": "etcd cluster database is running full."},
		StartsAt:    t0.Add(-10 * time.Minute), ReceivedAt: at(0),
	}})
	inc.SetState(remediator.StateRunning, "", at(5))
	steps := []struct {
		name, out string
		risk      remediator.Risk
		ms        int
	}{
		{"preflight", "m1 (8e) leader: db 9.5 MiB", remediator.RiskReadOnly, 10},
		{"snapshot", "saved 8.9 MiB", remediator.RiskReadOnly, 90},
		{"compact", "compacted to revision 43", remediator.RiskDestructive, 20},
		{"defragment", "m2 (2b, follower): 10.3 MiB -> 824.0 KiB in 12ms\nm1 (8e, leader): 10.3 MiB -> 824.0 KiB in 8ms", remediator.RiskHigh, 40},
		{"disarm", "disarmed NOSPACE of member m2", remediator.RiskLow, 8},
		{"verify", "no alarms | wrote remediator/probe", remediator.RiskLow, 12},
	}
	ms := 5
	for _, s := range steps {
		inc.Steps = append(inc.Steps, remediator.Step{Name: s.name, Description: "does " + s.name, Risk: s.risk, State: remediator.StepSucceeded,
			Attempts: 1, StartedAt: at(ms), FinishedAt: at(ms + s.ms), Output: s.out})
		inc.Record(at(ms+s.ms), remediator.EventStepSucceeded, s.name, "succeeded")
		ms += s.ms
	}
	member := func(name, id string, leader bool, db int64, alarms ...string) remediator.MemberStatus {
		return remediator.MemberStatus{ID: id, Name: name, Endpoint: "https://" + name + ":2379", Leader: leader,
			DBSize: db, DBSizeInUse: db - 1024, Quota: 8 << 20, Revision: 43, RaftIndex: 64, Alarms: alarms}
	}
	inc.Before = []remediator.MemberStatus{member("m1", "8e", true, 10<<20), member("m2", "2b", false, 9<<20, "NOSPACE")}
	inc.After = []remediator.MemberStatus{member("m1", "8e", true, 824<<10), member("m2", "2b", false, 824<<10)}
	inc.SetState(remediator.StateSucceeded, "", at(ms+1))
	return inc
}

// closed is the recovered incident once its alert resolved, with what the steps found, a
// title, and a probe failure around it whose event began days before.
func closed() *remediator.Incident {
	inc := recovered()
	inc.Title = "NOSPACE recovery"
	inc.AddFindings(remediator.StepResult{
		RootCause: "the keyspace outgrew the 8.0 MiB quota: revision history was never compacted",
		FollowUps: []string{"turn on auto-compaction (--auto-compaction-mode=periodic --auto-compaction-retention=1h)"},
	})
	inc.Before[0].FsyncP99, inc.After[0].FsyncP99 = 0.0042, 0.0038
	inc.AddEvidence([]remediator.Alert{{
		Source: "kubernetes", Fingerprint: "5e0c2a9b7d41f3c8", Status: remediator.AlertFiring, Cluster: "prod", Context: true,
		Labels: map[string]string{"alertname": "EtcdPodUnhealthy", "cluster": "prod", "namespace": "kube-system", "kind": "Pod",
			"name": "etcd-m2", "reason": "Unhealthy", "type": "Warning", "component": "etcd", "node": "m2"},
		Annotations: map[string]string{"message": "Liveness probe failed: HTTP probe failed with statuscode: 503", "count": "4120"},
		StartsAt:    inc.CreatedAt.Add(-3*24*time.Hour - 5*time.Hour), ReceivedAt: inc.CreatedAt.Add(-40 * time.Second),
	}})
	a := inc.Evidence[0]
	a.Status, a.EndsAt, a.ReceivedAt = remediator.AlertResolved, inc.FinishedAt.Add(20*time.Second), inc.FinishedAt.Add(30*time.Second)
	inc.AddEvidence([]remediator.Alert{a})
	return inc
}

// failed stopped at defragment: m2 did not answer, so only m1 was measured after.
func failed() *remediator.Incident {
	inc := recovered()
	inc.Steps[3].State, inc.Steps[3].Error = remediator.StepFailed, "not defragmenting m1 (8e) while a member is unhealthy: member m2 (2b) at https://m2:2379: context deadline exceeded"
	inc.Steps[3].Output = "m2 (2b, follower): 9.0 MiB -> 824.0 KiB in 12ms"
	inc.Steps[4].State, inc.Steps[4].Output, inc.Steps[4].Attempts = remediator.StepSkipped, "not run: step defragment failed", 0
	inc.Steps[5].State, inc.Steps[5].Output, inc.Steps[5].Attempts = remediator.StepSkipped, "not run: step defragment failed", 0
	m1 := inc.Before[0]
	m1.RaftIndex = 71
	inc.After = []remediator.MemberStatus{m1, {ID: "2b", Name: "m2", Endpoint: "https://m2:2379", Error: "context deadline exceeded"}}
	inc.SetState(remediator.StateFailed, "step defragment failed: "+inc.Steps[3].Error, inc.FinishedAt)
	return inc
}

func TestReportsMatchTheGoldenFiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inc    *remediator.Incident
		format string
	}{
		{"recovered.md", recovered(), "md"},
		{"recovered.json", recovered(), "json"},
		{"closed.md", closed(), "md"},
		{"closed.json", closed(), "json"},
		{"failed.md", failed(), "md"},
		{"closed.html", closed(), "html"},
		{"failed.html", failed(), "html"},
		{"approved.md", approved(), "md"},
		{"approved.html", approved(), "html"},
		{"approved.json", approved(), "json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got, err := Renderer{}.Render(tc.inc, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.name)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("report differs from %s (run go test -update to accept):\n%s", path, got)
			}
		})
	}
}

// approved waited 3m for its second approval before step compact, then recovered.
func approved() *remediator.Incident {
	inc := recovered()
	at := inc.Steps[1].FinishedAt
	const wait = 3 * time.Minute
	// What came after the gate came once the second approval did.
	for i := range inc.Steps[2:] {
		s := &inc.Steps[2+i]
		s.StartedAt, s.FinishedAt = s.StartedAt.Add(wait), s.FinishedAt.Add(wait)
	}
	for i, e := range inc.Timeline {
		if e.At.After(at) {
			inc.Timeline[i].At = e.At.Add(wait)
		}
	}
	inc.FinishedAt, inc.UpdatedAt = inc.FinishedAt.Add(wait), inc.UpdatedAt.Add(wait)
	inc.Approval = &remediator.ApprovalRequest{Gate: "compact", Reason: "step compact is destructive risk", Required: 2,
		RequestedAt: at, ExpiresAt: at.Add(30 * time.Minute), Granted: true, Approvals: []remediator.Approval{
			{By: "U01ALICE", Via: "slack", At: at.Add(2 * time.Minute)},
			{By: "bob", Via: "api", At: at.Add(wait), Comment: "history | not data"},
		}}
	inc.Record(at, remediator.EventState, "", "state awaiting_approval: step compact is destructive risk")
	inc.Record(at, remediator.EventApprovalRequested, "compact", "waiting before compact for 2 approval(s) from any operator, until 2026-11-21T10:30:00Z: step compact is destructive risk")
	inc.Record(at.Add(2*time.Minute), remediator.EventApproved, "compact", "approved by U01ALICE via slack (1 of 2)")
	inc.Record(at.Add(wait), remediator.EventApproved, "compact", "approved by bob via api (2 of 2): history | not data")
	inc.Record(at.Add(wait), remediator.EventState, "", "state running")
	slices.SortStableFunc(inc.Timeline, func(a, b remediator.Event) int { return a.At.Compare(b.At) })
	return inc
}

// approvedTwice is approved with a second gate, before defragment, under per_step_from: the
// first request granted is past, and carol and dave approved the second 2m after it was asked.
func approvedTwice() *remediator.Incident {
	inc := approved()
	at := inc.Steps[2].FinishedAt
	const wait = 2 * time.Minute
	for i := range inc.Steps[3:] {
		s := &inc.Steps[3+i]
		s.StartedAt, s.FinishedAt = s.StartedAt.Add(wait), s.FinishedAt.Add(wait)
	}
	for i, e := range inc.Timeline {
		if e.At.After(at) {
			inc.Timeline[i].At = e.At.Add(wait)
		}
	}
	inc.FinishedAt, inc.UpdatedAt = inc.FinishedAt.Add(wait), inc.UpdatedAt.Add(wait)
	inc.PastApprovals = []remediator.ApprovalRequest{*inc.Approval}
	inc.Approval = &remediator.ApprovalRequest{Gate: "defragment", Reason: "step defragment asks for a fresh approval", Required: 2,
		RequestedAt: at, ExpiresAt: at.Add(30 * time.Minute), Granted: true, Approvals: []remediator.Approval{
			{By: "carol", Via: "api", At: at.Add(time.Minute)},
			{By: "dave", Via: "api", At: at.Add(wait)},
		}}
	inc.Record(at, remediator.EventApprovalRequested, "defragment", "waiting before defragment for 2 approval(s) from any operator")
	inc.Record(at.Add(time.Minute), remediator.EventApproved, "defragment", "approved by carol via api (1 of 2)")
	inc.Record(at.Add(wait), remediator.EventApproved, "defragment", "approved by dave via api (2 of 2)")
	slices.SortStableFunc(inc.Timeline, func(a, b remediator.Event) int { return a.At.Compare(b.At) })
	return inc
}

// A run approved gate by gate reports every request, who approved each, and the time spent
// waiting on all of them.
func TestEveryApprovalIsReported(t *testing.T) {
	r := Build(approvedTwice())
	if got, want := time.Duration(r.ApprovalWait*float64(time.Second)), 5*time.Minute; got != want {
		t.Errorf("approval wait %v, want %v: the 3m before compact and the 2m before defragment", got, want)
	}
	md := Markdown(r)
	for _, want := range []string{
		"before step compact, until",
		"| U01ALICE | slack |",
		"| bob | api |",
		"before step defragment, until",
		"| carol | api |",
		"| dave | api |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown report lacks %q:\n%s", want, md)
		}
	}
	if strings.Index(md, "before step compact") > strings.Index(md, "before step defragment") {
		t.Errorf("the requests are not in the order they were asked:\n%s", md)
	}
	page, err := HTML(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="approvals-table"`, `id="approvals-table-2"`, "<td data-label=\"Approved by\">dave</td>"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the HTML report lacks %s", want)
		}
	}
	// Stored without the requests' approvals, the timeline still tells both waits.
	inc := approvedTwice()
	inc.Approval.Approvals, inc.Approval.Granted = nil, false
	if got := Build(inc).ApprovalWait; got != r.ApprovalWait {
		t.Errorf("approval wait from the timeline %vs, want %vs", got, r.ApprovalWait)
	}
}
