// Package report renders an incident's post-incident report: what happened, the evidence,
// each step with its duration and output, and each member's figures before and after.
package report

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/remediator/remediator"
)

// Report is the post-incident report, as its JSON format carries it.
type Report struct {
	Incident string `json:"incident"`
	Cluster  string `json:"cluster"`
	// Title says what was done, for people: the remediation's title when the incident was
	// opened, or its name for an incident stored before incidents had titles.
	Title       string           `json:"title"`
	Remediation string           `json:"remediation"`
	Policy      string           `json:"policy"`
	Mode        remediator.Mode  `json:"mode"`
	State       remediator.State `json:"state"`
	Reason      string           `json:"reason,omitempty"`
	// Summary says what broke, what was done and how it ended, in a few sentences.
	Summary string `json:"summary"`
	// RootCause is the cause as far as the evidence and the steps show it.
	RootCause   string    `json:"root_cause"`
	FirstSignal time.Time `json:"first_signal,omitzero"`
	ReceivedAt  time.Time `json:"received_at,omitzero"`
	OpenedAt    time.Time `json:"opened_at"`
	// RecoveredAt is when the remediation verified the recovery.
	RecoveredAt time.Time `json:"recovered_at,omitzero"`
	// ResolvedAt is when the last of the incident's alerts resolved.
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	ClosedAt   time.Time `json:"closed_at,omitzero"`
	// Impact is the window the cluster was hurt in: from the first signal to the recovery
	// (or the alerts' resolution); its end is zero while it lasts.
	Impact Window `json:"impact"`
	// TimeToRecovery is from the first webhook to the verified recovery, in seconds, less
	// ApprovalWait: the time from each request for approval to its grant, which measures the
	// humans rather than the remediation. The two add up to the time that passed.
	TimeToRecovery float64 `json:"time_to_recovery_seconds,omitempty"`
	ApprovalWait   float64 `json:"approval_wait_seconds,omitempty"`
	// Approval is the last request for approval; PastApprovals those granted before it, at
	// earlier gates, oldest first.
	Approval      *remediator.ApprovalRequest  `json:"approval,omitempty"`
	PastApprovals []remediator.ApprovalRequest `json:"past_approvals,omitempty"`
	Members       []Member                     `json:"members,omitempty"`
	Steps         []Step                       `json:"steps"`
	// NotDone lists what the remediation did not do, and why.
	NotDone []string `json:"not_done,omitempty"`
	// FollowUps are what is left to humans.
	FollowUps []string           `json:"follow_ups,omitempty"`
	Evidence  []remediator.Alert `json:"evidence"`
	// Timeline is every event of the incident, in time order.
	Timeline []remediator.Event `json:"timeline"`
}

// Timeline events the report adds to the incident's own: when the problem began, recovered
// and resolved, as the figures above them say.
const (
	EventFirstSignal = "first_signal"
	EventRecovered   = "recovered"
	EventResolved    = "resolved"
)

// firstSignal names the alerts that started at the first signal.
func firstSignal(inc *remediator.Incident, at time.Time) string {
	var names []string
	for _, a := range inc.Evidence {
		if !a.Context && a.StartsAt.Equal(at) && !slices.Contains(names, a.Name()) {
			names = append(names, a.Name())
		}
	}
	return strings.Join(names, ", ") + " started firing"
}

// Window is a span of time; a zero End means it has not ended.
type Window struct {
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
}

// Duration is the window's length, or zero while it lasts.
func (w Window) Duration() time.Duration {
	if w.Start.IsZero() || w.End.IsZero() {
		return 0
	}
	return w.End.Sub(w.Start)
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

// Render renders the incident's report as "md" (Markdown), "html" (a self-contained page) or
// "json".
func (Renderer) Render(inc *remediator.Incident, format string) (string, []byte, error) {
	r := Build(inc)
	switch format {
	case "md", "markdown":
		return "text/markdown; charset=utf-8", []byte(Markdown(r)), nil
	case "html":
		b, err := HTML(r)
		return "text/html; charset=utf-8", b, err
	case "json":
		b, err := json.MarshalIndent(r, "", "  ")
		return "application/json", append(b, '\n'), err
	}
	return "", nil, remediator.Errorf(remediator.EINVALID, "report format %q: use md, html or json", format)
}

// Build gathers the report of an incident.
func Build(inc *remediator.Incident) Report {
	r := Report{
		Incident:      inc.ID,
		Cluster:       inc.Cluster,
		Title:         cmp.Or(inc.Title, inc.Remediation),
		Remediation:   inc.Remediation,
		Policy:        inc.Policy,
		Mode:          inc.Mode,
		State:         inc.State,
		Reason:        inc.Reason,
		ReceivedAt:    inc.ReceivedAt(),
		OpenedAt:      inc.CreatedAt,
		FinishedAt:    inc.FinishedAt,
		ClosedAt:      inc.ClosedAt,
		Evidence:      inc.Evidence,
		Timeline:      slices.Clone(inc.Timeline),
		Approval:      inc.Approval,
		PastApprovals: inc.PastApprovals,
		Steps:         make([]Step, len(inc.Steps)),
		FollowUps:     inc.FollowUps,
	}
	resolved := inc.AlertsResolved()
	for _, a := range inc.Evidence {
		// A probe failure around the incident may have started days before; it is not when
		// the incident's problem did.
		if !a.Context && !a.StartsAt.IsZero() && (r.FirstSignal.IsZero() || a.StartsAt.Before(r.FirstSignal)) {
			r.FirstSignal = a.StartsAt
		}
		if a.Status == remediator.AlertResolved && resolved {
			end := a.EndsAt
			if end.IsZero() {
				end = a.ReceivedAt
			}
			if end.After(r.ResolvedAt) {
				r.ResolvedAt = end
			}
		}
	}
	if d := inc.TimeToRecovery(); d > 0 {
		r.RecoveredAt = inc.Steps[len(inc.Steps)-1].FinishedAt
		wait := approvalWait(inc, r.ReceivedAt, r.RecoveredAt)
		r.TimeToRecovery, r.ApprovalWait = (d - wait).Seconds(), wait.Seconds()
	}
	// The timeline starts with the problem, as its source saw it start, and ends with the
	// recovery and the alerts resolving; evidence remembered from before the incident opened
	// is recorded when it joined, so every event is put back in time order.
	if !r.FirstSignal.IsZero() {
		r.Timeline = append(r.Timeline, remediator.Event{At: r.FirstSignal, Kind: EventFirstSignal, Message: "first signal: " + firstSignal(inc, r.FirstSignal)})
	}
	if !r.RecoveredAt.IsZero() {
		r.Timeline = append(r.Timeline, remediator.Event{At: r.RecoveredAt, Kind: EventRecovered, Message: "recovery verified by the last step"})
	}
	if !r.ResolvedAt.IsZero() {
		r.Timeline = append(r.Timeline, remediator.Event{At: r.ResolvedAt, Kind: EventResolved, Message: "the last of the incident's alerts resolved, as its source saw it"})
	}
	slices.SortStableFunc(r.Timeline, func(a, b remediator.Event) int { return a.At.Compare(b.At) })
	r.Impact = Window{Start: r.FirstSignal, End: r.RecoveredAt}
	if r.Impact.Start.IsZero() {
		r.Impact.Start = r.ReceivedAt
	}
	if r.Impact.End.IsZero() {
		r.Impact.End = r.ResolvedAt
	}
	for i, s := range inc.Steps {
		r.Steps[i] = Step{Step: s, Seconds: s.Duration().Seconds()}
	}
	r.Members = members(inc.Before, inc.After)
	r.RootCause = rootCause(inc)
	r.NotDone = notDone(inc)
	r.Summary = summary(inc, r)
	return r
}

// Requests returns the report's approval requests, oldest first.
func (r Report) Requests() []*remediator.ApprovalRequest {
	var out []*remediator.ApprovalRequest
	for i := range r.PastApprovals {
		out = append(out, &r.PastApprovals[i])
	}
	if r.Approval != nil {
		out = append(out, r.Approval)
	}
	return out
}

// approvalWait is how long, between from and to, the incident waited for humans: from each
// request for approval to the approval that granted it, summed over its gates. The requests
// say both; where one lacks its grant, the timeline's events stand in, gate by gate.
func approvalWait(inc *remediator.Incident, from, to time.Time) time.Duration {
	type wait struct{ asked, answered time.Time }
	var waits []wait
	fromRequests := true
	for _, a := range inc.Requests() {
		answered, ok := granted(a)
		fromRequests = fromRequests && ok
		waits = append(waits, wait{a.RequestedAt, answered})
	}
	if !fromRequests || len(waits) == 0 {
		waits = nil
		for _, e := range inc.Timeline {
			switch {
			case e.Kind == remediator.EventApprovalRequested:
				waits = append(waits, wait{asked: e.At})
			case e.Kind == remediator.EventApproved && len(waits) > 0:
				waits[len(waits)-1].answered = e.At // the last approval is the one that granted the request
			}
		}
	}
	var total time.Duration
	for _, w := range waits {
		if w.asked.IsZero() || w.answered.IsZero() {
			continue
		}
		// Only the wait inside the window counts.
		asked, answered := later(w.asked, from), earlier(w.answered, to)
		total += max(answered.Sub(asked), 0)
	}
	return total
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// rootCause is what the steps found, or what the evidence says when they found nothing.
func rootCause(inc *remediator.Incident) string {
	if inc.RootCause != "" {
		return inc.RootCause
	}
	var said []string
	for _, a := range inc.Evidence {
		if a.Status != remediator.AlertFiring || a.Context {
			continue
		}
		if text := alertText(a); text != "" && !slices.Contains(said, text) {
			said = append(said, text)
		}
	}
	if len(said) == 0 {
		return "Not established: the steps did not find a cause, and the alerts do not say one."
	}
	return "Not established beyond what the evidence says: " + strings.Join(said, "; ")
}

// notDone lists the steps that did not run or did not finish, and why; and, for an incident
// that ran nothing, why not.
func notDone(inc *remediator.Incident) []string {
	var out []string
	reason := func(step string) string {
		for _, e := range slices.Backward(inc.Timeline) {
			if e.Step == step && e.Kind == remediator.EventStepSkipped {
				return e.Message
			}
		}
		return ""
	}
	for _, s := range inc.Steps {
		why := ""
		switch s.State {
		case remediator.StepSucceeded:
			continue
		case remediator.StepFailed:
			why = "failed: " + s.Error
		case remediator.StepSkipped:
			why = cmp.Or(reason(s.Name), strings.TrimSpace(s.Output), "skipped")
		default:
			if !inc.State.Terminal() {
				continue // still to come
			}
			why = "not run: the incident ended " + string(inc.State)
			if inc.Reason != "" {
				why += " (" + inc.Reason + ")"
			}
		}
		out = append(out, s.Name+": "+why)
	}
	if len(inc.Steps) == 0 && inc.State.Terminal() && inc.State != remediator.StateSucceeded {
		out = append(out, fmt.Sprintf("%s was not run: the incident ended %s (%s)", inc.Remediation, inc.State, inc.Reason))
	}
	return out
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
	// A failed run may have measured some members after and not others: each keeps what
	// was measured, and the report says which were not.
	for _, s := range after {
		add(s, func(m *Member, s *remediator.MemberStatus) { m.After = s })
	}
	return out
}

func summary(inc *remediator.Incident, r Report) string {
	var b strings.Builder
	var names []string
	for _, a := range inc.Evidence {
		// A signal around the incident is not what the remediation answers.
		if a.Status == remediator.AlertFiring && !a.Context && !slices.Contains(names, a.Name()) {
			names = append(names, a.Name())
		}
	}
	fmt.Fprintf(&b, "%s on cluster %s, answering %s, ", r.Title, inc.Cluster, strings.Join(names, ", "))
	switch inc.State {
	case remediator.StateSucceeded:
		fmt.Fprintf(&b, "succeeded")
		if r.TimeToRecovery > 0 {
			fmt.Fprintf(&b, " %s after the first webhook", seconds(r.TimeToRecovery))
			if r.ApprovalWait > 0 {
				fmt.Fprintf(&b, ", plus %s waiting for approval", seconds(r.ApprovalWait))
			}
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
	b.WriteString(figures(inc, r.Members))
	return b.String()
}

// figures sums up the members' databases and alarms before and after, over the members
// measured both times, and names those that were not measured after.
func figures(inc *remediator.Incident, ms []Member) string {
	var before, after int64
	var alarmsBefore, alarmsAfter int
	var both []string
	for _, m := range ms {
		b, a := measured(m.Before), measured(m.After)
		if a == nil || b == nil {
			continue
		}
		both = append(both, m.Name)
		before += b.DBSize
		after += a.DBSize
		alarmsBefore += len(b.Alarms)
		alarmsAfter += len(a.Alarms)
	}
	sums := fmt.Sprintf("went from %s to %s in all; alarms from %d to %d.",
		remediator.HumanBytes(before), remediator.HumanBytes(after), alarmsBefore, alarmsAfter)
	switch {
	case len(ms) == 0:
		return ""
	case len(both) == len(ms):
		return " The members' databases " + sums
	case len(both) > 0:
		s := fmt.Sprintf(" Of the members measured before and after (%s), the databases %s", strings.Join(both, ", "), sums)
		if missing := notAfter(ms); missing != "" {
			s += " " + missing + "."
		}
		return s
	case inc.State.Terminal() && !slices.ContainsFunc(ms, func(m Member) bool { return measured(m.After) != nil }):
		return " No member was measured after."
	}
	return ""
}
