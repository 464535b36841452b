package slack

import (
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
)

// perStep is an incident waiting before its second gate, a destructive step that asks again
// under per_step_from, after alice and bob approved the first.
func perStep() *remediator.Incident {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	inc := remediator.NewIncident("20261121-100000-abcdef", "prod", remediator.Decision{
		Policy: "snapshot-missing", Remediation: "etcd-snapshot-missing-recovery", Mode: remediator.ModeAuto,
		Params: map[string]string{"member": "m2"},
		Gates: remediator.Gates{Approval: &remediator.ApprovalRule{Users: []string{remediator.AnyApprover}, Required: 2,
			Timeout: remediator.Duration(time.Hour), FromRisk: remediator.RiskHigh, PerStepFrom: remediator.RiskDestructive}},
	}, now)
	inc.AddEvidence([]remediator.Alert{{Source: "alertmanager", Fingerprint: "fp1", Status: remediator.AlertFiring,
		Labels: map[string]string{"alertname": "EtcdLogs", "instance": "10.0.0.12:2379", "pod": "etcd-m2"}, ReceivedAt: now}})
	inc.Steps = []remediator.Step{
		{Name: "stop", Risk: remediator.RiskHigh, State: remediator.StepSucceeded, Description: "stop the member",
			Undo: "start it again: put its manifest back"},
		{Name: "restore", Risk: remediator.RiskDestructive, State: remediator.StepPending,
			Description: "rebuild its data dir from the backed-up member/snap/db; writes only the WAL held are lost",
			Undo:        "irreversible for the writes only the WAL held; the data dir as it was is moved aside on the node"},
	}
	inc.Before = []remediator.MemberStatus{{ID: "8e", Name: "m2", DBSize: 9 << 20, Quota: 8 << 20, FsyncP99: 0.0042}}
	inc.PastApprovals = []remediator.ApprovalRequest{{Gate: "stop", Required: 2, Granted: true, Approvals: []remediator.Approval{
		{By: "alice", Via: remediator.ViaAPI, At: now.Add(time.Minute)},
		{By: "U02BOBBY", ChatID: "U02BOBBY", Via: remediator.ViaSlack, At: now.Add(2 * time.Minute)},
	}}}
	inc.Approval = &remediator.ApprovalRequest{Gate: "restore", Required: 2, RequestedAt: now.Add(3 * time.Minute), ExpiresAt: now.Add(time.Hour),
		Approvals: []remediator.Approval{{By: "carol", ChatID: "U03CAROL", Via: remediator.ViaSlack, At: now.Add(4 * time.Minute)}}}
	inc.SetState(remediator.StateAwaitingApproval, "step restore is destructive risk", now.Add(3*time.Minute))
	return inc
}

// The request says what is at stake: what the step changes and how to undo it, what it acts
// on, the figures, who approved so far and who approved the gate before.
func TestTheApprovalRequestSaysWhatIsAtStake(t *testing.T) {
	blocks := anyBlocksOf(t, render(perStep(), "https://remediator.example/report"))
	mrkdwn, _ := mrkdwnTexts(blocks)
	var request string
	for _, s := range mrkdwn {
		if strings.Contains(s, "Approval needed before") {
			request = s
		}
	}
	all := strings.Join(mrkdwn, "\n")
	for _, want := range []string{
		"*Approval needed before restore* (destructive risk): 1 of 2 given. Approvers: any operator.",
		"*Approved so far*: carol (<@U03CAROL>) via slack at 10:04 UTC",
		"*Approved before stop*: alice via api at 10:01 UTC, <@U02BOBBY> via slack at 10:02 UTC",
		"*It changes*: rebuild its data dir from the backed-up member/snap/db; writes only the WAL held are lost",
		"*To undo*: irreversible for the writes only the WAL held; the data dir as it was is moved aside on the node",
		"*Acts on*: member m2 (the policy's params.member)",
		"This approval covers only this step of those at destructive risk or above",
	} {
		if !strings.Contains(request, want) {
			t.Errorf("the request lacks %q:\n%s", want, request)
		}
	}
	if want := "• m2: 9.0 MiB, 8.0 MiB quota (112% full), no alarm, fsync p99 4.2 ms"; !strings.Contains(all, want) {
		t.Errorf("the message lacks the figures %q:\n%s", want, all)
	}

	// Without params, what the alerts name.
	inc := perStep()
	inc.Params = nil
	request = ask(inc, inc.Approval)
	if want := "*Acts on*: instance 10.0.0.12:2379, pod etcd-m2 (as the alerts name them)"; !strings.Contains(request, want) {
		t.Errorf("the request lacks %q:\n%s", want, request)
	}
	// A lesser step's approval reaches further, but not past the next destructive one.
	inc.Approval.Gate, inc.PastApprovals = "stop", nil
	if want := "This approval covers the steps after it, but those at destructive risk or above, which ask again."; !strings.Contains(ask(inc, inc.Approval), want) {
		t.Errorf("the request before stop lacks %q:\n%s", want, ask(inc, inc.Approval))
	}
}

// Once no request waits, the message still says who approved each gate.
func TestTheMessageKeepsWhoApprovedEachGate(t *testing.T) {
	inc := perStep()
	inc.Approval.Approvals = append(inc.Approval.Approvals, remediator.Approval{By: "dave", Via: remediator.ViaAPI, At: inc.Approval.RequestedAt.Add(5 * time.Minute)})
	inc.Approval.Granted = true
	inc.SetState(remediator.StateRunning, "", inc.Approval.RequestedAt.Add(5*time.Minute))
	mrkdwn, _ := mrkdwnTexts(anyBlocksOf(t, render(inc, "https://remediator.example/report")))
	all := strings.Join(mrkdwn, "\n")
	for _, want := range []string{
		"*Approvals*\n• before stop: approved by alice via api at 10:01 UTC, <@U02BOBBY> via slack at 10:02 UTC\n• before restore: approved by carol (<@U03CAROL>) via slack at 10:04 UTC, dave via api at 10:08 UTC",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the message lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "Approval needed") {
		t.Errorf("a running incident's message still asks for approval:\n%s", all)
	}
}

// What plans, policies and alerts write into the request is escaped and kept short: the
// request stays one section within Slack's limit, and the buttons stay as the intake reads
// them.
func TestTheApprovalRequestStaysEscapedAndWithinLimits(t *testing.T) {
	inc := perStep()
	inc.Steps[1].Description = strings.Repeat("delete & rebuild ", 400) + hostile
	inc.Steps[1].Undo = hostile + strings.Repeat(" undo", 1000)
	inc.Params["member"] = hostile
	inc.PastApprovals[0].Approvals[0].By = hostile
	blocks := render(inc, "https://remediator.example/report")
	mrkdwn, _ := mrkdwnTexts(anyBlocksOf(t, blocks))
	for _, s := range mrkdwn {
		if n := len([]rune(s)); n > maxSection {
			t.Errorf("a text of %d characters, over Slack's %d", n, maxSection)
		}
		if strings.Contains(s, "<!channel>") || strings.Contains(s, "<http://evil.example") || bareAmpersand(s) {
			t.Errorf("raw markup or a bare & sent: %q", s)
		}
	}
	if got := strings.Join(mrkdwn, "\n"); !strings.Contains(got, "*Acts on*: member "+hostileEscaped) || !strings.Contains(got, "*Approved before stop*: "+hostileEscaped+" via api") {
		t.Errorf("the hostile member name or approver is not shown escaped:\n%s", got)
	}
	var got []string
	for _, b := range anyBlocksOf(t, blocks).([]any) {
		if m := b.(map[string]any); m["type"] == "actions" {
			for _, e := range m["elements"].([]any) {
				el := e.(map[string]any)
				got = append(got, el["action_id"].(string)+"="+el["value"].(string))
			}
		}
	}
	// The buttons answer this request alone: the incident, the step it waits before, the attempt.
	value := inc.ID + ":" + inc.Approval.Gate + ":1"
	if want := "approve=" + value + " reject=" + value; strings.Join(got, " ") != want {
		t.Errorf("buttons %v, want %s", got, want)
	}
}
