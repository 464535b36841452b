package slack

import (
	"fmt"
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
	if a := inc.Approval; a != nil && inc.State == remediator.StateAwaitingApproval {
		rule := inc.Gates.Approval
		ask := fmt.Sprintf(":raised_hand: *Approval needed before %s*: %d of %d given. Approvers: %s. Expires %s.",
			escape(a.Gate), len(a.Approvals), a.Required, who(rule), a.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"))
		blocks = append(blocks, slack.NewSectionBlock(text(truncate(ask, maxSection)), nil, nil),
			slack.NewActionBlock("approval",
				slack.NewButtonBlockElement(ActionApprove, inc.ID, slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false)).WithStyle(slack.StylePrimary),
				slack.NewButtonBlockElement(ActionReject, inc.ID, slack.NewTextBlockObject(slack.PlainTextType, "Reject", false, false)).WithStyle(slack.StyleDanger),
			))
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

// who names the approvers of a rule, as mentions where they are Slack IDs. It is markup on
// purpose, built from the policy, which is trusted configuration: it is not escaped.
func who(rule *remediator.ApprovalRule) string {
	var parts []string
	for _, u := range rule.Users {
		if strings.HasPrefix(u, "U") || strings.HasPrefix(u, "W") {
			parts = append(parts, "<@"+u+">")
		} else {
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
	b.WriteString("*Members* (db size, quota, alarms)")
	for _, s := range inc.Before {
		line := fmt.Sprintf("\n• %s%s: %s, %s, %s", escape(s.Name), map[bool]string{true: " (leader)"}[s.Leader],
			remediator.HumanBytes(s.DBSize), s.QuotaText(), escape(alarmText(s.Alarms)))
		if a, ok := after[s.ID]; ok {
			line += fmt.Sprintf(" → %s, %s", remediator.HumanBytes(a.DBSize), escape(alarmText(a.Alarms)))
		}
		b.WriteString(line)
	}
	return b.String()
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
