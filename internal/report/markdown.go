package report

import (
	"fmt"
	"strings"
	"time"
)

// Markdown renders the report as Markdown.
func Markdown(r Report) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("# Incident %s on %s: %s\n\n", r.Incident, r.Cluster, r.Title)
	p("%s\n\n", r.Summary)
	p("**Root cause.** %s\n\n", r.RootCause)
	p("| | |\n|---|---|\n")
	p("| State | %s |\n", r.State)
	if r.Reason != "" {
		p("| Reason | %s |\n", cell(r.Reason))
	}
	p("| Remediation | %s |\n", r.Remediation)
	p("| Policy | %s (mode %s) |\n", r.Policy, r.Mode)
	p("| First signal | %s |\n", flagged(r.FirstSignal, r.OpenedAt))
	p("| Webhook received | %s |\n", stamp(r.ReceivedAt))
	p("| Incident opened | %s |\n", stamp(r.OpenedAt))
	p("| Recovered | %s |\n", stamp(r.RecoveredAt))
	p("| Alerts resolved | %s |\n", stamp(r.ResolvedAt))
	p("| Finished | %s |\n", stamp(r.FinishedAt))
	p("| Closed | %s |\n", stamp(r.ClosedAt))
	p("| Impact window | %s |\n", window(r.Impact))
	if r.TimeToRecovery > 0 {
		p("| Webhook to verified recovery | %s |\n", recovery(r))
	}

	if len(r.Members) > 0 {
		p("\n## Members before and after\n\n")
		p("| %s |\n|%s\n", strings.Join(memberColumns, " | "), strings.Repeat("---|", len(memberColumns)))
		for _, m := range r.Members {
			var cells []string
			for _, f := range memberRow(m, mixed(r.Members)) {
				cells = append(cells, cell(f.String()))
			}
			p("| %s |\n", strings.Join(cells, " | "))
		}
		p("\n%s\n", membersNote(r.Members))
	}

	if reqs := r.Requests(); len(reqs) > 0 {
		p("\n## Approval\n")
		for _, a := range reqs {
			p("\n%s\n", asked(a))
			if len(a.Approvals) > 0 {
				p("\n| Approved by | Via | At | Comment |\n|---|---|---|---|\n")
				for _, x := range a.Approvals {
					p("| %s | %s | %s | %s |\n", x.By, x.Via, stamp(x.At), cell(x.Comment))
				}
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
	p("| Alert | Instance | Status | Source | Fingerprint | Started | Received | Summary |\n|---|---|---|---|---|---|---|---|\n")
	for _, a := range r.Evidence {
		p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", a.Name(), cell(instance(a)), a.Status, a.Source, a.Fingerprint,
			flagged(a.StartsAt, r.OpenedAt), flagged(a.ReceivedAt, r.OpenedAt), cell(alertText(a)))
	}

	p("\n## Timeline\n\n| Time | Event | Step | |\n|---|---|---|---|\n")
	for _, e := range r.Timeline {
		p("| %s | %s | %s | %s |\n", stamp(e.At), e.Kind, e.Step, cell(e.Message))
	}
	return b.String()
}

// flagged is a timestamp of the evidence, with a warning in bold where it is more than a day
// before the incident opened.
func flagged(t, opened time.Time) string {
	if e := early(t, opened); e != "" {
		return stamp(t) + " **(" + e + ")**"
	}
	return stamp(t)
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

// cell keeps a value on one table row.
func cell(s string) string {
	return strings.NewReplacer("\n", " ", "|", "\\|").Replace(strings.TrimSpace(s))
}
