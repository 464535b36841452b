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

// memberRow is a member's cells in the members table, each figure before → after.
func memberRow(m Member) []string {
	return []string{m.Name, m.ID,
		pair(m, role),
		pair(m, func(s *remediator.MemberStatus) string { return remediator.HumanBytes(s.DBSize) }),
		pair(m, func(s *remediator.MemberStatus) string { return remediator.HumanBytes(s.DBSizeInUse) }),
		pair(m, quota),
		pair(m, func(s *remediator.MemberStatus) string { return fmt.Sprint(s.Revision) }),
		pair(m, func(s *remediator.MemberStatus) string { return fmt.Sprint(s.RaftIndex) }),
		pair(m, alarms),
		pair(m, fsync),
	}
}

// membersNote says how to read the members table: a reader would otherwise take figures
// measured once for figures that did not change.
func membersNote(ms []Member) string {
	if ms[0].After == nil {
		return "These are the figures before: the remediation stopped before it measured them again."
	}
	return "Each cell is before → after."
}

// asked describes an approval request and where it stands.
func asked(a *remediator.ApprovalRequest) string {
	s := fmt.Sprintf("Asked %s before step %s, until %s: %s. %d approval(s) needed, %d given",
		stamp(a.RequestedAt), a.Gate, stamp(a.ExpiresAt), a.Reason, a.Required, len(a.Approvals))
	if a.Granted {
		return s + "; granted."
	}
	return s + "; not granted."
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
