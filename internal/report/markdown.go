package report

import (
	"fmt"
	"strings"
	"time"

	"github.com/remediator/remediator"
)

// Markdown renders the report as Markdown.
func Markdown(r Report) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("# Incident %s: %s on %s\n\n", r.Incident, r.Remediation, r.Cluster)
	p("%s\n\n", r.Summary)
	p("**Root cause.** %s\n\n", r.RootCause)
	p("| | |\n|---|---|\n")
	p("| State | %s |\n", r.State)
	if r.Reason != "" {
		p("| Reason | %s |\n", cell(r.Reason))
	}
	p("| Policy | %s (mode %s) |\n", r.Policy, r.Mode)
	p("| First signal | %s |\n", stamp(r.FirstSignal))
	p("| Webhook received | %s |\n", stamp(r.ReceivedAt))
	p("| Incident opened | %s |\n", stamp(r.OpenedAt))
	p("| Recovered | %s |\n", stamp(r.RecoveredAt))
	p("| Alerts resolved | %s |\n", stamp(r.ResolvedAt))
	p("| Finished | %s |\n", stamp(r.FinishedAt))
	p("| Closed | %s |\n", stamp(r.ClosedAt))
	p("| Impact window | %s |\n", window(r.Impact))
	if r.TimeToRecovery > 0 {
		p("| Webhook to verified recovery | %s |\n", seconds(r.TimeToRecovery))
	}

	if len(r.Members) > 0 {
		p("\n## Members before and after\n\n")
		p("| Member | ID | Role | DB size | DB in use | Quota | Revision | Raft index | Alarms | WAL fsync p99 |\n")
		p("|---|---|---|---|---|---|---|---|---|---|\n")
		for _, m := range r.Members {
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", m.Name, m.ID,
				pair(m, func(s *remediator.MemberStatus) string { return role(s) }),
				pair(m, func(s *remediator.MemberStatus) string { return remediator.HumanBytes(s.DBSize) }),
				pair(m, func(s *remediator.MemberStatus) string { return remediator.HumanBytes(s.DBSizeInUse) }),
				pair(m, func(s *remediator.MemberStatus) string { return remediator.HumanBytes(s.Quota) }),
				pair(m, func(s *remediator.MemberStatus) string { return fmt.Sprint(s.Revision) }),
				pair(m, func(s *remediator.MemberStatus) string { return fmt.Sprint(s.RaftIndex) }),
				pair(m, func(s *remediator.MemberStatus) string { return alarms(s) }),
				pair(m, func(s *remediator.MemberStatus) string { return fsync(s) }))
		}
		if r.Members[0].After == nil {
			p("\nThese are the figures before: the remediation stopped before it measured them again.\n")
		} else {
			p("\nEach cell is before → after.\n")
		}
	}

	if a := r.Approval; a != nil {
		p("\n## Approval\n\n")
		p("Asked %s before step %s, until %s: %s. %d approval(s) needed, %d given", stamp(a.RequestedAt), a.Gate, stamp(a.ExpiresAt), a.Reason, a.Required, len(a.Approvals))
		if a.Granted {
			p("; granted.\n")
		} else {
			p("; not granted.\n")
		}
		if len(a.Approvals) > 0 {
			p("\n| Approved by | Via | At | Comment |\n|---|---|---|---|\n")
			for _, x := range a.Approvals {
				p("| %s | %s | %s | %s |\n", x.By, x.Via, stamp(x.At), cell(x.Comment))
			}
		}
		p("\nRefusals, rejections and expiry are in the timeline.\n")
	}

	p("\n## Steps\n\n")
	p("| # | Step | Risk | State | Attempts | Took |\n|---|---|---|---|---|---|\n")
	for i, s := range r.Steps {
		p("| %d | %s | %s | %s | %d | %s |\n", i+1, s.Name, s.Risk, s.State, s.Attempts, seconds(s.Seconds))
	}
	for i, s := range r.Steps {
		p("\n### %d. %s (%s)\n\n%s.\n", i+1, s.Name, s.State, s.Description)
		if out := strings.TrimSpace(s.Output); out != "" {
			p("\n```\n%s\n```\n", out)
		}
		if s.Error != "" {
			p("\n**Error:** %s\n", s.Error)
		}
	}

	p("\n## Not done\n\n")
	list(&b, r.NotDone, "Nothing: every step ran.")
	p("\n## Follow-ups\n\n")
	list(&b, r.FollowUps, "None that the remediation could name.")

	p("\n## Evidence\n\n")
	p("| Alert | Status | Source | Fingerprint | Started | Received | Summary |\n|---|---|---|---|---|---|---|\n")
	for _, a := range r.Evidence {
		text := a.Annotations["summary"]
		if text == "" {
			text = a.Annotations["description"]
		}
		p("| %s | %s | %s | %s | %s | %s | %s |\n", a.Name(), a.Status, a.Source, a.Fingerprint, stamp(a.StartsAt), stamp(a.ReceivedAt), cell(text))
	}

	p("\n## Timeline\n\n| Time | Event | Step | |\n|---|---|---|---|\n")
	for _, e := range r.Timeline {
		p("| %s | %s | %s | %s |\n", stamp(e.At), e.Kind, e.Step, cell(e.Message))
	}
	return b.String()
}

// list writes items as a bullet list, or none when there are none.
func list(b *strings.Builder, items []string, none string) {
	if len(items) == 0 {
		fmt.Fprintf(b, "%s\n", none)
		return
	}
	for _, it := range items {
		fmt.Fprintf(b, "- %s\n", cell(it))
	}
}

// window shows the impact window: its start, end and length, or that it lasts.
func window(w Window) string {
	switch {
	case w.Start.IsZero():
		return "–"
	case w.End.IsZero():
		return stamp(w.Start) + " → (not over)"
	}
	return fmt.Sprintf("%s → %s (%s)", stamp(w.Start), stamp(w.End), w.Duration().Round(time.Millisecond))
}

// fsync shows a member's WAL fsync p99, or "–" where it was not measured.
func fsync(s *remediator.MemberStatus) string {
	if s.FsyncP99 <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f ms", s.FsyncP99*1000)
}

// pair shows a figure before → after, once if it did not change or only one side was taken.
func pair(m Member, f func(*remediator.MemberStatus) string) string {
	switch {
	case m.After == nil:
		return f(m.Before)
	case m.Before == nil:
		return f(m.After)
	}
	before, after := f(m.Before), f(m.After)
	if before == after {
		return before
	}
	return before + " → " + after
}

func role(s *remediator.MemberStatus) string {
	switch {
	case s.Error != "":
		return "unreachable"
	case s.Leader:
		return "leader"
	case s.Learner:
		return "learner"
	}
	return "follower"
}

func alarms(s *remediator.MemberStatus) string {
	if len(s.Alarms) == 0 {
		return "none"
	}
	return strings.Join(s.Alarms, ",")
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

func seconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

// cell keeps a value on one table row.
func cell(s string) string {
	return strings.NewReplacer("\n", " ", "|", "\\|").Replace(strings.TrimSpace(s))
}
