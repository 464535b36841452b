package slack

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/remediator/remediator"
)

// Action IDs of the approval buttons; the button's value is the incident ID.
const (
	ActionApprove = "approve"
	ActionReject  = "reject"
)

// Slack's limits: a section's text, and what a thread reply shows of a step's output.
const (
	maxSection = 3000
	maxOutput  = 2500
)

var stateEmoji = map[remediator.State]string{
	remediator.StatePending: ":hourglass:", remediator.StateAwaitingApproval: ":raised_hand:", remediator.StateRunning: ":gear:",
	remediator.StateSucceeded: ":white_check_mark:", remediator.StateFailed: ":x:", remediator.StateRejected: ":no_entry:",
	remediator.StateSkipped: ":fast_forward:", remediator.StateCancelled: ":heavy_minus_sign:",
}

var stepEmoji = map[remediator.StepState]string{
	remediator.StepPending: ":white_circle:", remediator.StepRunning: ":gear:", remediator.StepSucceeded: ":white_check_mark:",
	remediator.StepFailed: ":x:", remediator.StepSkipped: ":fast_forward:",
}

// summary is the incident in a line, as plain text: it heads the message, and, escaped, is
// the message's fallback text (notifications, screen readers).
func summary(inc *remediator.Incident) string {
	return fmt.Sprintf("%s on %s: %s", inc.Remediation, inc.Cluster, strings.ReplaceAll(string(inc.State), "_", " "))
}

// markup escapes the three characters that Slack's mrkdwn reads as markup.
var markup = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// escape makes s, taken from an alert, an event or an incident, show as written in mrkdwn
// text: without it, an alert label or an approver's comment holding <!channel> would notify
// the whole channel, and <http://evil.example|click> would show as a link. Only markup we build
// ourselves from trusted configuration (mentions of the policy's approvers, the report link)
// is left unescaped.
func escape(s string) string { return markup.Replace(s) }

func text(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

// render builds the incident's message: what broke, the evidence, the plan with each step's
// risk and state, and, while it waits, the approval request with its buttons.
func render(inc *remediator.Incident, reportURL string) []slack.Block {
	blocks := []slack.Block{
		slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, truncate(summary(inc), 150), false, false)),
		slack.NewSectionBlock(nil, []*slack.TextBlockObject{
			text("*Cluster*\n" + escape(inc.Cluster)),
			text(fmt.Sprintf("*State*\n%s %s", stateEmoji[inc.State], escape(string(inc.State)))),
			text(fmt.Sprintf("*Policy*\n%s (mode %s)", escape(inc.Policy), escape(string(inc.Mode)))),
			text("*Incident*\n" + escape(inc.ID)),
		}, nil),
	}
	if inc.Reason != "" {
		blocks = append(blocks, slack.NewSectionBlock(text(truncate(escape(inc.Reason), maxSection)), nil, nil))
	}
	blocks = append(blocks, slack.NewSectionBlock(text(truncate(evidence(inc), maxSection)), nil, nil))
	if figures := figures(inc); figures != "" {
		blocks = append(blocks, slack.NewSectionBlock(text(truncate(figures, maxSection)), nil, nil))
	}
	blocks = append(blocks, slack.NewSectionBlock(text(truncate(plan(inc), maxSection)), nil, nil))
	if a := inc.Approval; a != nil && inc.State == remediator.StateAwaitingApproval && inc.Cancel == nil {
		// The buttons answer this request alone: a click that arrives after the next gate
		// opened is refused, not counted for a step its clicker never saw.
		value := remediator.AnswerValue(inc)
		blocks = append(blocks, slack.NewSectionBlock(text(truncate(ask(inc, a), maxSection)), nil, nil),
			slack.NewActionBlock("approval",
				slack.NewButtonBlockElement(ActionApprove, value, slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false)).WithStyle(slack.StylePrimary),
				slack.NewButtonBlockElement(ActionReject, value, slack.NewTextBlockObject(slack.PlainTextType, "Reject", false, false)).WithStyle(slack.StyleDanger),
			))
	} else if answered := approvals(inc); answered != "" {
		blocks = append(blocks, slack.NewSectionBlock(text(truncate(answered, maxSection)), nil, nil))
	}
	if inc.State.Terminal() {
		status := "its alerts still fire"
		if inc.Closed() {
			status = "closed " + inc.ClosedAt.UTC().Format("15:04:05Z")
		}
		blocks = append(blocks, slack.NewSectionBlock(text(fmt.Sprintf("%s *%s*, %s. <%s|Post-incident report>", stateEmoji[inc.State], escape(string(inc.State)), status, reportURL)), nil, nil))
	}
	return blocks
}

// maxDetail bounds each part of the approval request that comes from a plan, a policy or an
// alert, so that one long part does not push the others out of the section.
const maxDetail = 600

// ask is the approval request and what is at stake, for whoever approves: what the step
// changes and how to undo it, what it acts on, who approved so far and at the earlier gates,
// and how far this approval reaches.
func ask(inc *remediator.Incident, a *remediator.ApprovalRequest) string {
	rule := inc.Gates.Approval
	var step remediator.Step
	for _, s := range inc.Steps {
		if s.Name == a.Gate {
			step = s
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, ":raised_hand: *Approval needed before %s*", escape(a.Gate))
	if step.Risk != "" {
		fmt.Fprintf(&b, " (%s risk)", escape(string(step.Risk)))
	}
	fmt.Fprintf(&b, ": %d of %d given. Approvers: %s. Expires %s.", len(a.Approvals), a.Required, who(rule), a.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "\n*Approved so far*: %s", approvers(a.Approvals, "nobody yet"))
	for _, past := range inc.PastApprovals {
		fmt.Fprintf(&b, "\n*Approved before %s*: %s", escape(past.Gate), approvers(past.Approvals, "nobody"))
	}
	if step.Description != "" {
		fmt.Fprintf(&b, "\n*It changes*: %s", truncate(escape(step.Description), maxDetail))
	}
	undo := cmp.Or(step.Undo, "the remediation does not say")
	if step.Undo == "" && step.Risk == remediator.RiskReadOnly {
		undo = "nothing: the step changes nothing"
	}
	fmt.Fprintf(&b, "\n*To undo*: %s", truncate(escape(undo), maxDetail))
	if on := targets(inc); on != "" {
		fmt.Fprintf(&b, "\n*Acts on*: %s", truncate(on, maxDetail))
	}
	switch {
	case rule == nil:
	case rule.PerStep(step.Risk):
		fmt.Fprintf(&b, "\nThis approval covers only this step of those at %s risk or above: each of them asks again.", escape(string(rule.PerStepFrom)))
	case rule.PerStepFrom != "":
		fmt.Fprintf(&b, "\nThis approval covers the steps after it, but those at %s risk or above, which ask again.", escape(string(rule.PerStepFrom)))
	default:
		b.WriteString("\nThis approval covers the rest of the run.")
	}
	return b.String()
}

// approvals says who approved each gate of the run, once none waits: "" if none was asked.
func approvals(inc *remediator.Incident) string {
	reqs := inc.Requests()
	if len(reqs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("*Approvals*")
	for _, a := range reqs {
		fmt.Fprintf(&b, "\n• before %s: ", escape(a.Gate))
		if a.Granted {
			b.WriteString("approved by " + approvers(a.Approvals, "nobody"))
		} else {
			fmt.Fprintf(&b, "not granted, %d of %d given (%s)", len(a.Approvals), a.Required, approvers(a.Approvals, "none"))
		}
	}
	return b.String()
}

// approvers names the people who approved, with how and when: a Slack user as a mention,
// which Slack shows by name, as their ID came signed by Slack; anyone else as the name they
// answered under, escaped.
func approvers(as []remediator.Approval, none string) string {
	if len(as) == 0 {
		return none
	}
	var names []string
	for _, x := range as {
		name := escape(x.By)
		if x.Via == remediator.ViaSlack && remediator.LooksLikeSlackID(x.ChatID) {
			if x.By == x.ChatID {
				name = "<@" + x.ChatID + ">"
			} else {
				name += " (<@" + x.ChatID + ">)"
			}
		}
		names = append(names, fmt.Sprintf("%s via %s at %s", name, escape(x.Via), x.At.UTC().Format("15:04 UTC")))
	}
	return strings.Join(names, ", ")
}

// targetLabels are the alert labels that name what the remediation acts on, as the
// remediations read them when their parameters name nothing.
var targetLabels = []string{"member", "instance", "pod", "node"}

// targets names what the run acts on, as far as the incident knows it: the members, nodes or
// keys the policy's parameters name, else those its firing alerts name. The remediation
// confirms them in its first steps; this is what a human can check before approving.
func targets(inc *remediator.Incident) string {
	var parts []string
	for _, k := range []string{"member", "survivor", "node", "key"} {
		if v := inc.Params[k]; v != "" {
			parts = append(parts, fmt.Sprintf("%s %s (the policy's params.%s)", k, escape(v), k))
		}
	}
	if len(parts) > 0 {
		return strings.Join(parts, "; ")
	}
	var named []string
	for _, a := range inc.Evidence {
		if a.Context || a.Status != remediator.AlertFiring {
			continue
		}
		for _, k := range targetLabels {
			if v := a.Labels[k]; v != "" && !slices.Contains(named, k+" "+v) {
				named = append(named, k+" "+v)
			}
		}
		if a.Labels["kind"] != "" && a.Labels["name"] != "" && !slices.Contains(named, a.Labels["kind"]+" "+a.Labels["name"]) {
			named = append(named, a.Labels["kind"]+" "+a.Labels["name"])
		}
	}
	if len(named) == 0 {
		return ""
	}
	return escape(strings.Join(named, ", ")) + " (as the alerts name them)"
}

// who names the approvers of a rule, as mentions where they are Slack IDs. It is markup on
// purpose, built from the policy, which is trusted configuration: it is not escaped.
func who(rule *remediator.ApprovalRule) string {
	var parts []string
	for _, u := range rule.Users {
		switch {
		case u == remediator.AnyApprover:
			parts = append(parts, "any operator") // "*" would be mrkdwn's bold
		case strings.HasPrefix(u, "U") || strings.HasPrefix(u, "W"):
			parts = append(parts, "<@"+u+">")
		default:
			parts = append(parts, u)
		}
	}
	for _, g := range rule.Groups {
		parts = append(parts, "<!subteam^"+g+">")
	}
	return strings.Join(parts, ", ")
}

func evidence(inc *remediator.Incident) string {
	counts := map[string]int{}
	var names []string
	for _, a := range inc.Evidence {
		key := a.Name() + " (" + string(a.Status) + ")"
		if counts[key] == 0 {
			names = append(names, key)
		}
		counts[key]++
	}
	var b strings.Builder
	b.WriteString("*Evidence*")
	for _, n := range names {
		fmt.Fprintf(&b, "\n• %s ×%d", escape(n), counts[n])
	}
	return b.String()
}

// figures shows each member's key figures, before and, once measured, after.
func figures(inc *remediator.Incident) string {
	if len(inc.Before) == 0 {
		return ""
	}
	after := map[string]remediator.MemberStatus{}
	for _, s := range inc.After {
		after[s.ID] = s
	}
	var b strings.Builder
	b.WriteString("*Members* (db size, quota, alarms, WAL fsync p99 where measured)")
	for _, s := range inc.Before {
		line := fmt.Sprintf("\n• %s%s: %s, %s, %s%s", escape(s.Name), map[bool]string{true: " (leader)"}[s.Leader],
			remediator.HumanBytes(s.DBSize), quotaText(s), escape(alarmText(s.Alarms)), fsyncText(s))
		if a, ok := after[s.ID]; ok {
			line += fmt.Sprintf(" → %s, %s%s", remediator.HumanBytes(a.DBSize), escape(alarmText(a.Alarms)), fsyncText(a))
		}
		b.WriteString(line)
	}
	return b.String()
}

// quotaText is the member's quota and how full its db is: "8.0 MiB quota (112% full)".
func quotaText(s remediator.MemberStatus) string {
	if s.Quota <= 0 {
		return s.QuotaText()
	}
	return fmt.Sprintf("%s (%.0f%% full)", s.QuotaText(), float64(s.DBSize)*100/float64(s.Quota))
}

// fsyncText is the member's WAL fsync p99, where a step measured it.
func fsyncText(s remediator.MemberStatus) string {
	if s.FsyncP99 <= 0 {
		return ""
	}
	return fmt.Sprintf(", fsync p99 %.1f ms", s.FsyncP99*1000)
}

func alarmText(alarms []string) string {
	if len(alarms) == 0 {
		return "no alarm"
	}
	return strings.Join(alarms, ",")
}

func plan(inc *remediator.Incident) string {
	var b strings.Builder
	b.WriteString("*Plan*")
	for _, s := range inc.Steps {
		fmt.Fprintf(&b, "\n%s %s — %s risk", stepEmoji[s.State], escape(s.Name), escape(string(s.Risk)))
		if a := inc.Approval; a != nil && a.Gate == s.Name && s.State == remediator.StepPending && !a.Granted {
			b.WriteString(" — :raised_hand: waits for approval")
		}
		if d := s.Duration(); d > 0 {
			fmt.Fprintf(&b, " (%s)", d.Round(time.Millisecond))
		}
	}
	return b.String()
}

// threadText is the thread reply for a timeline event, in mrkdwn, or "" if the event is not
// worth one. reportURL is ready for mrkdwn (see Notifier.reportURL).
func threadText(inc *remediator.Incident, e remediator.Event, reportURL string) string {
	switch e.Kind {
	case remediator.EventStepSucceeded, remediator.EventStepFailed:
		for _, s := range inc.Steps {
			if s.Name != e.Step {
				continue
			}
			emoji := stepEmoji[remediator.StepSucceeded]
			if e.Kind == remediator.EventStepFailed {
				emoji = stepEmoji[remediator.StepFailed]
			}
			reply := fmt.Sprintf("%s *%s* %s", emoji, escape(s.Name), escape(e.Message))
			if out := strings.TrimSpace(s.Output); out != "" {
				reply += "\n```" + truncate(escape(out), maxOutput) + "```"
			}
			return reply
		}
	case remediator.EventApprovalRequested, remediator.EventApproved, remediator.EventRejected,
		remediator.EventRefused, remediator.EventExpired, remediator.EventNotice:
		return fmt.Sprintf(":memo: %s", escape(e.Message))
	case remediator.EventState:
		if strings.HasPrefix(e.Message, "state "+string(inc.State)) && inc.State.Terminal() {
			return fmt.Sprintf("%s %s. Report: %s", stateEmoji[inc.State], escape(e.Message), reportURL)
		}
	case remediator.EventClosed:
		// The report is complete now: alerts resolved, impact window closed.
		return fmt.Sprintf(":checkered_flag: Incident %s. Post-incident report: %s", escape(e.Message), reportURL)
	}
	return ""
}

// truncate keeps s within n characters, cutting on a rune boundary and, in escaped text,
// before an entity (&amp; &lt; &gt;) rather than through it.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	kept := string(r[:n-1])
	if i := strings.LastIndexByte(kept, '&'); i >= 0 && !strings.Contains(kept[i:], ";") {
		for _, entity := range []string{"&amp;", "&lt;", "&gt;"} {
			if strings.HasPrefix(s[i:], entity) {
				kept = kept[:i]
				break
			}
		}
	}
	return kept + "…"
}
