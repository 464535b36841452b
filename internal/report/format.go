package report

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/remediator/remediator"
)

// The helpers here are shared by the Markdown and the HTML report, so that both show a
// figure the same way.

// memberColumns are the headings of the members table; memberRow gives a member's cells.
var memberColumns = []string{"Member", "ID", "Role", "DB size", "DB in use", "Quota", "Revision", "Raft index", "Alarms", "WAL fsync p99"}

// quota is the member's quota, or "unknown" where it told it nowhere.
func quota(s *remediator.MemberStatus) string {
	if s.Quota <= 0 {
		return "unknown"
	}
	return remediator.HumanBytes(s.Quota)
}

// figure is one cell of the members table: a figure before and after, After empty where it
// is the same or only one side has it.
type figure struct {
	Before, After string
}

// String is the figure as the Markdown report writes it.
func (f figure) String() string {
	if f.After == "" {
		return f.Before
	}
	return f.Before + " → " + f.After
}

// memberRow is a member's cells in the members table, each figure before → after. mixed says
// that some members were measured after and some not: those not say so by their name.
func memberRow(m Member, mixed bool) []figure {
	name := m.Name
	if gap := gaps(m, mixed); gap != "" {
		name += " (" + gap + ")"
	}
	return []figure{{Before: name}, {Before: m.ID},
		// An unreachable member has a role, "unreachable", but no figures.
		pair(m.Before, m.After, role),
		pair(measured(m.Before), measured(m.After), func(s *remediator.MemberStatus) string { return remediator.HumanBytes(s.DBSize) }),
		pair(measured(m.Before), measured(m.After), func(s *remediator.MemberStatus) string { return remediator.HumanBytes(s.DBSizeInUse) }),
		pair(measured(m.Before), measured(m.After), quota),
		pair(measured(m.Before), measured(m.After), func(s *remediator.MemberStatus) string { return fmt.Sprint(s.Revision) }),
		pair(measured(m.Before), measured(m.After), func(s *remediator.MemberStatus) string { return fmt.Sprint(s.RaftIndex) }),
		pair(measured(m.Before), measured(m.After), alarms),
		pair(measured(m.Before), measured(m.After), fsync),
	}
}

// measured is a side's figures, or nil where the member was not measured or did not answer.
func measured(s *remediator.MemberStatus) *remediator.MemberStatus {
	if s == nil || s.Error != "" {
		return nil
	}
	return s
}

// gaps says which side of a member's figures is missing and why: "not measured after",
// "unreachable before". A missing after is only said where others were measured after
// (mixed); otherwise the note under the table says it of every member.
func gaps(m Member, mixed bool) string {
	var out []string
	side := func(s *remediator.MemberStatus, when string) {
		switch {
		case s == nil:
			out = append(out, "not measured "+when)
		case s.Error != "":
			out = append(out, "unreachable "+when)
		}
	}
	side(m.Before, "before")
	if mixed {
		side(m.After, "after")
	}
	return strings.Join(out, ", ")
}

// mixed says whether some members were measured after and some not.
func mixed(ms []Member) bool {
	some, all := false, true
	for _, m := range ms {
		if measured(m.After) != nil {
			some = true
		} else {
			all = false
		}
	}
	return some && !all
}

// membersNote says how to read the members table: a reader would otherwise take figures
// measured once for figures that did not change.
func membersNote(ms []Member) string {
	var after, unreachable int
	for _, m := range ms {
		switch {
		case measured(m.After) != nil:
			after++
		case m.After != nil:
			unreachable++
		}
	}
	switch {
	case after == 0 && unreachable == 0:
		return "These are the figures before: the remediation stopped before it measured them again."
	case after == 0:
		return "These are the figures before: no member answered when the remediation measured them again."
	case after < len(ms):
		return fmt.Sprintf("Each cell is before → after, one figure where it did not change. %s: %s figures are from before.",
			notAfter(ms), plural(len(ms)-after, "its", "their"))
	}
	return "Each cell is before → after, one figure where it did not change."
}

// notAfter names the members without figures after, and why: "m2 did not answer when
// measured after and m3 was not measured after".
func notAfter(ms []Member) string {
	var absent, unreachable []string
	for _, m := range ms {
		switch {
		case m.After == nil:
			absent = append(absent, m.Name)
		case m.After.Error != "":
			unreachable = append(unreachable, m.Name)
		}
	}
	var out []string
	if len(unreachable) > 0 {
		out = append(out, strings.Join(unreachable, ", ")+" did not answer when measured after")
	}
	if len(absent) > 0 {
		out = append(out, strings.Join(absent, ", ")+" "+plural(len(absent), "was", "were")+" not measured after")
	}
	return strings.Join(out, " and ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// asked describes an approval request and where it stands.
func asked(a *remediator.ApprovalRequest) string {
	s := fmt.Sprintf("Asked %s before step %s, until %s: %s. %d approval(s) needed, %d given",
		stamp(a.RequestedAt), a.Gate, stamp(a.ExpiresAt), a.Reason, a.Required, len(a.Approvals))
	if at, ok := granted(a); ok {
		return s + "; granted " + duration(at.Sub(a.RequestedAt)) + " after it was asked."
	}
	return s + "; not granted."
}

// granted is when the request was granted: the approval that made enough approvers is the
// last one it took.
func granted(a *remediator.ApprovalRequest) (time.Time, bool) {
	if !a.Granted || len(a.Approvals) == 0 {
		return time.Time{}, false
	}
	return a.Approvals[len(a.Approvals)-1].At, true
}

// recovery is the time from the first webhook to the verified recovery, with the time spent
// waiting for approval apart: that time measures the humans, not the remediation.
func recovery(r Report) string {
	s := seconds(r.TimeToRecovery)
	if r.ApprovalWait > 0 {
		s += " (plus " + seconds(r.ApprovalWait) + " waiting for approval)"
	}
	return s
}

// staleAfter is how long before the incident opened a timestamp of its evidence may be before
// the report points it out.
const staleAfter = 24 * time.Hour

// early says how long before the incident opened a timestamp of its evidence is, where that
// is more than a day: such evidence is an old alert, or the clock of its source is wrong.
func early(t, opened time.Time) string {
	if t.IsZero() || opened.Sub(t) <= staleAfter {
		return ""
	}
	return duration(opened.Sub(t)) + " before the incident opened: an old alert, or a skewed clock"
}

// instance is what an alert is about: its instance label, or the Kubernetes object of an
// event and the node it is on, or else the node, pod or member it names.
func instance(a remediator.Alert) string {
	l := a.Labels
	if l["instance"] != "" {
		return l["instance"]
	}
	if l["kind"] != "" && l["name"] != "" {
		obj := l["kind"] + " " + l["name"]
		if l["namespace"] != "" {
			obj = l["kind"] + " " + l["namespace"] + "/" + l["name"]
		}
		if l["node"] != "" {
			obj += " on node " + l["node"]
		}
		return obj
	}
	for _, k := range []string{"node", "pod", "member"} {
		if l[k] != "" {
			return k + " " + l[k]
		}
	}
	return "–"
}

// alertText is what an alert says of itself: its summary, else its description, else (an
// event) its message.
func alertText(a remediator.Alert) string {
	return cmp.Or(a.Annotations["summary"], a.Annotations["description"], a.Annotations["message"])
}

// window shows the impact window: its start, end and length, or that it lasts.
func window(w Window) string {
	switch {
	case w.Start.IsZero():
		return "–"
	case w.End.IsZero():
		return stamp(w.Start) + " → (not over)"
	}
	return fmt.Sprintf("%s → %s (%s)", stamp(w.Start), stamp(w.End), duration(w.Duration()))
}

// fsync shows a member's WAL fsync p99, or "–" where it was not measured.
func fsync(s *remediator.MemberStatus) string {
	if s.FsyncP99 <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f ms", s.FsyncP99*1000)
}

// pair is a figure before → after, once if it did not change or only one side has it.
func pair(before, after *remediator.MemberStatus, f func(*remediator.MemberStatus) string) figure {
	switch {
	case before == nil && after == nil:
		return figure{Before: "–"}
	case after == nil:
		return figure{Before: f(before)}
	case before == nil:
		return figure{Before: f(after)}
	}
	b, a := f(before), f(after)
	if b == a {
		return figure{Before: b}
	}
	return figure{Before: b, After: a}
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

// seconds is a duration in seconds, as the JSON report carries it, shown like duration.
func seconds(s float64) string {
	return duration(time.Duration(s * float64(time.Second)))
}

// duration is a length of time as a person reads it: 809ms, 1.8s, 4m12s, 2h5m, 13d9h.
func duration(d time.Duration) string { return remediator.HumanDuration(d) }
