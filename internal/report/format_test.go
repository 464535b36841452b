package report

import (
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
)

// A run that stopped part way shows the figures it measured after, and says which members it
// did not measure.
func TestMembersShowWhatWasMeasuredAfter(t *testing.T) {
	status := func(name, id string, db int64) *remediator.MemberStatus {
		return &remediator.MemberStatus{ID: id, Name: name, DBSize: db, Quota: 8 << 20, Revision: 43}
	}
	unreachable := &remediator.MemberStatus{ID: "2b", Name: "m2", Error: "context deadline exceeded"}
	for _, tc := range []struct {
		name    string
		members []Member
		state   remediator.State
		// names are the members' cells in the Member column; note and figures are the note
		// under the table and the summary's sentence on the figures.
		names         []string
		note, figures string
	}{
		{"every member measured after", []Member{
			{Name: "m1", ID: "8e", Before: status("m1", "8e", 10<<20), After: status("m1", "8e", 1<<20)},
			{Name: "m2", ID: "2b", Before: status("m2", "2b", 9<<20), After: status("m2", "2b", 1<<20)},
		}, remediator.StateSucceeded, []string{"m1", "m2"},
			"Each cell is before → after, one figure where it did not change.",
			" The members' databases went from 19.0 MiB to 2.0 MiB in all; alarms from 0 to 0."},
		{"none measured after", []Member{
			{Name: "m1", ID: "8e", Before: status("m1", "8e", 10<<20)},
			{Name: "m2", ID: "2b", Before: status("m2", "2b", 9<<20)},
		}, remediator.StateFailed, []string{"m1", "m2"},
			"These are the figures before: the remediation stopped before it measured them again.",
			" No member was measured after."},
		{"one not measured after", []Member{
			{Name: "m1", ID: "8e", Before: status("m1", "8e", 10<<20), After: status("m1", "8e", 1<<20)},
			{Name: "m2", ID: "2b", Before: status("m2", "2b", 9<<20)},
		}, remediator.StateFailed, []string{"m1", "m2 (not measured after)"},
			"Each cell is before → after, one figure where it did not change. m2 was not measured after: its figures are from before.",
			" Of the members measured before and after (m1), the databases went from 10.0 MiB to 1.0 MiB in all; alarms from 0 to 0. m2 was not measured after."},
		{"one unreachable after", []Member{
			{Name: "m1", ID: "8e", Before: status("m1", "8e", 10<<20), After: status("m1", "8e", 1<<20)},
			{Name: "m2", ID: "2b", Before: status("m2", "2b", 9<<20), After: unreachable},
		}, remediator.StateFailed, []string{"m1", "m2 (unreachable after)"},
			"Each cell is before → after, one figure where it did not change. m2 did not answer when measured after: its figures are from before.",
			" Of the members measured before and after (m1), the databases went from 10.0 MiB to 1.0 MiB in all; alarms from 0 to 0. m2 did not answer when measured after."},
		{"none answered after", []Member{
			{Name: "m2", ID: "2b", Before: status("m2", "2b", 9<<20), After: unreachable},
		}, remediator.StateFailed, []string{"m2"},
			"These are the figures before: no member answered when the remediation measured them again.",
			" No member was measured after."},
		{"a member that joined", []Member{
			{Name: "m1", ID: "8e", Before: status("m1", "8e", 10<<20), After: status("m1", "8e", 10<<20)},
			{Name: "m4", ID: "4d", After: status("m4", "4d", 10<<20)},
		}, remediator.StateSucceeded, []string{"m1", "m4 (not measured before)"},
			"Each cell is before → after, one figure where it did not change.",
			" Of the members measured before and after (m1), the databases went from 10.0 MiB to 10.0 MiB in all; alarms from 0 to 0."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var names []string
			for _, m := range tc.members {
				names = append(names, memberRow(m, mixed(tc.members))[0].String())
			}
			if strings.Join(names, "|") != strings.Join(tc.names, "|") {
				t.Errorf("members %q, want %q", names, tc.names)
			}
			if got := membersNote(tc.members); got != tc.note {
				t.Errorf("note %q, want %q", got, tc.note)
			}
			if got := figures(&remediator.Incident{State: tc.state}, tc.members); got != tc.figures {
				t.Errorf("figures %q, want %q", got, tc.figures)
			}
		})
	}
}

func TestUnreachableMemberHasNoFigures(t *testing.T) {
	m := Member{Name: "m2", ID: "2b",
		Before: &remediator.MemberStatus{ID: "2b", Name: "m2", DBSize: 9 << 20, Quota: 8 << 20},
		After:  &remediator.MemberStatus{ID: "2b", Name: "m2", Error: "context deadline exceeded"}}
	row := memberRow(m, true)
	if got, want := row[2].String(), "follower → unreachable"; got != want {
		t.Errorf("role %q, want %q", got, want)
	}
	// Not "9.0 MiB → 0 B": the member told nothing.
	if got, want := row[3].String(), "9.0 MiB"; got != want {
		t.Errorf("DB size %q, want %q", got, want)
	}
}

func TestEvidenceNamesItsInstance(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   string
	}{
		{"an alert's instance", map[string]string{"instance": "10.0.0.11:2379", "pod": "etcd-m1"}, "10.0.0.11:2379"},
		{"a Kubernetes event's object and node", map[string]string{"kind": "Pod", "namespace": "kube-system", "name": "etcd-m2", "node": "m2"},
			"Pod kube-system/etcd-m2 on node m2"},
		{"an event's object without a namespace", map[string]string{"kind": "Node", "name": "m2"}, "Node m2"},
		{"a node label", map[string]string{"node": "m3"}, "node m3"},
		{"nothing", map[string]string{"alertname": "x"}, "–"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := instance(remediator.Alert{Labels: tc.labels}); got != tc.want {
				t.Errorf("instance %q, want %q", got, tc.want)
			}
		})
	}
}

func TestEarlyEvidenceIsFlagged(t *testing.T) {
	opened := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		at   time.Time
		want string
	}{
		{"minutes before", opened.Add(-10 * time.Minute), ""},
		{"a day before", opened.Add(-24 * time.Hour), ""},
		{"days before", opened.Add(-3*24*time.Hour - 5*time.Hour), "3d5h before the incident opened: an old alert, or a skewed clock"},
		{"after", opened.Add(time.Hour), ""},
		{"unknown", time.Time{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := early(tc.at, opened); got != tc.want {
				t.Errorf("early %q, want %q", got, tc.want)
			}
		})
	}
}

// Waiting for a human is not time the remediation took: it is shown apart, and only the part
// of it between the first webhook and the recovery counts.
func TestApprovalWaitIsApart(t *testing.T) {
	r := Build(approved())
	if got, want := time.Duration(r.ApprovalWait*float64(time.Second)), 3*time.Minute; got != want {
		t.Errorf("approval wait %v, want %v", got, want)
	}
	if got, want := recovery(r), "185ms (plus 3m waiting for approval)"; got != want {
		t.Errorf("recovery %q, want %q", got, want)
	}
	// An incident stored without the request's approvals still has its timeline.
	inc := approved()
	inc.Approval.Approvals, inc.Approval.Granted = nil, false
	if got := Build(inc).ApprovalWait; got != r.ApprovalWait {
		t.Errorf("approval wait from the timeline %vs, want %vs", got, r.ApprovalWait)
	}
	if got := Build(recovered()).ApprovalWait; got != 0 {
		t.Errorf("approval wait %vs of an incident that asked nobody", got)
	}
}

func TestTitleFallsBackToTheRemediation(t *testing.T) {
	inc := recovered()
	if got := Build(inc).Title; got != "etcd-nospace-recovery" {
		t.Errorf("title %q of an incident stored without one", got)
	}
	inc.Remediation, inc.Title = "etcd-liveness-probe-guard", "NOSPACE recovery with liveness probes guarded"
	r := Build(inc)
	if !strings.HasPrefix(Markdown(r), "# Incident 20261121-100000-abc123 on prod: NOSPACE recovery with liveness probes guarded\n") {
		t.Errorf("Markdown title: %.80q", Markdown(r))
	}
	if !strings.HasPrefix(r.Summary, "NOSPACE recovery with liveness probes guarded on cluster prod,") {
		t.Errorf("summary %q", r.Summary)
	}
}
