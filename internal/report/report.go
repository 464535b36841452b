// Package report renders an incident's post-incident report: what happened, the evidence,
// each step with its duration and output, and each member's figures before and after.
package report

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/remediator/remediator"
)

// Report is the post-incident report, as its JSON format carries it.
type Report struct {
	Incident    string           `json:"incident"`
	Cluster     string           `json:"cluster"`
	Remediation string           `json:"remediation"`
	Policy      string           `json:"policy"`
	Mode        remediator.Mode  `json:"mode"`
	State       remediator.State `json:"state"`
	Reason      string           `json:"reason,omitempty"`
	Summary     string           `json:"summary"`
	FirstSignal time.Time        `json:"first_signal,omitzero"`
	ReceivedAt  time.Time        `json:"received_at,omitzero"`
	OpenedAt    time.Time        `json:"opened_at"`
	FinishedAt  time.Time        `json:"finished_at,omitzero"`
	// TimeToRecovery is from the first webhook to the verified recovery, in seconds.
	TimeToRecovery float64                     `json:"time_to_recovery_seconds,omitempty"`
	Approval       *remediator.ApprovalRequest `json:"approval,omitempty"`
	Members        []Member                    `json:"members,omitempty"`
	Steps          []Step                      `json:"steps"`
	Evidence       []remediator.Alert          `json:"evidence"`
	Timeline       []remediator.Event          `json:"timeline"`
}

// Member is one member's figures before and after the remediation.
type Member struct {
	Name   string                   `json:"name"`
	ID     string                   `json:"id"`
	Before *remediator.MemberStatus `json:"before,omitempty"`
	After  *remediator.MemberStatus `json:"after,omitempty"`
}

// Step is one step as the report shows it.
type Step struct {
	remediator.Step
	Seconds float64 `json:"seconds"`
}

// Renderer renders reports.
type Renderer struct{}

// Render renders the incident's report as "md" (Markdown) or "json".
func (Renderer) Render(inc *remediator.Incident, format string) (string, []byte, error) {
	r := Build(inc)
	switch format {
	case "md", "markdown":
		return "text/markdown; charset=utf-8", []byte(Markdown(r)), nil
	case "json":
		b, err := json.MarshalIndent(r, "", "  ")
		return "application/json", append(b, '\n'), err
	}
	return "", nil, remediator.Errorf(remediator.EINVALID, "report format %q: use md or json", format)
}

// Build gathers the report of an incident.
func Build(inc *remediator.Incident) Report {
	r := Report{
		Incident:    inc.ID,
		Cluster:     inc.Cluster,
		Remediation: inc.Remediation,
		Policy:      inc.Policy,
		Mode:        inc.Mode,
		State:       inc.State,
		Reason:      inc.Reason,
		ReceivedAt:  inc.ReceivedAt(),
		OpenedAt:    inc.CreatedAt,
		FinishedAt:  inc.FinishedAt,
		Evidence:    inc.Evidence,
		Timeline:    inc.Timeline,
		Approval:    inc.Approval,
		Steps:       make([]Step, len(inc.Steps)),
	}
	for _, a := range inc.Evidence {
		if !a.StartsAt.IsZero() && (r.FirstSignal.IsZero() || a.StartsAt.Before(r.FirstSignal)) {
			r.FirstSignal = a.StartsAt
		}
	}
	if d := inc.TimeToRecovery(); d > 0 {
		r.TimeToRecovery = d.Seconds()
	}
	for i, s := range inc.Steps {
		r.Steps[i] = Step{Step: s, Seconds: s.Duration().Seconds()}
	}
	r.Members = members(inc.Before, inc.After)
	r.Summary = summary(inc, r.Members)
	return r
}

func members(before, after []remediator.MemberStatus) []Member {
	var out []Member
	index := map[string]int{}
	add := func(s remediator.MemberStatus, set func(*Member, *remediator.MemberStatus)) {
		i, ok := index[s.ID]
		if !ok {
			i = len(out)
			index[s.ID] = i
			out = append(out, Member{Name: s.Name, ID: s.ID})
		}
		set(&out[i], &s)
	}
	for _, s := range before {
		add(s, func(m *Member, s *remediator.MemberStatus) { m.Before = s })
	}
	for _, s := range after {
		add(s, func(m *Member, s *remediator.MemberStatus) { m.After = s })
	}
	return out
}

func summary(inc *remediator.Incident, ms []Member) string {
	var b strings.Builder
	var names []string
	for _, a := range inc.Evidence {
		if a.Status == remediator.AlertFiring && !slices.Contains(names, a.Name()) {
			names = append(names, a.Name())
		}
	}
	fmt.Fprintf(&b, "%s on cluster %s, answering %s, ", inc.Remediation, inc.Cluster, strings.Join(names, ", "))
	switch inc.State {
	case remediator.StateSucceeded:
		fmt.Fprintf(&b, "succeeded")
		if d := inc.TimeToRecovery(); d > 0 {
			fmt.Fprintf(&b, " %s after the first webhook", d.Round(time.Millisecond))
		}
		b.WriteString(".")
	case remediator.StateFailed:
		fmt.Fprintf(&b, "failed: %s.", inc.Reason)
	default:
		fmt.Fprintf(&b, "is %s", inc.State)
		if inc.Reason != "" {
			fmt.Fprintf(&b, ": %s", inc.Reason)
		}
		b.WriteString(".")
	}
	var before, after int64
	var alarmsBefore, alarmsAfter int
	complete := len(ms) > 0
	for _, m := range ms {
		if m.Before == nil || m.After == nil {
			complete = false
			continue
		}
		before += m.Before.DBSize
		after += m.After.DBSize
		alarmsBefore += len(m.Before.Alarms)
		alarmsAfter += len(m.After.Alarms)
	}
	if complete {
		fmt.Fprintf(&b, " The members' databases went from %s to %s in all; alarms from %d to %d.",
			remediator.HumanBytes(before), remediator.HumanBytes(after), alarmsBefore, alarmsAfter)
	}
	return b.String()
}
