package remediator

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration that reads and writes as "30m0s" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Gates are what a policy puts between an incident and its remediation, copied into the
// incident when it opens so that it runs under the rules it was opened with.
type Gates struct {
	// Approval says who must approve, and before which steps.
	Approval *ApprovalRule `json:"approval,omitempty"`
	// Cooldown is how long after a run of the same remediation on the same cluster a new one
	// is reported instead of run.
	Cooldown Duration `json:"cooldown,omitempty"`
	// MaxAttempts is how many runs of the same remediation on the same cluster may start
	// within AttemptsWindow before a new one is reported instead of run (0: no limit).
	MaxAttempts    int      `json:"max_attempts,omitempty"`
	AttemptsWindow Duration `json:"attempts_window,omitempty"`
	// Maintenance, when set, limits when the remediation may start.
	Maintenance *Maintenance `json:"maintenance,omitempty"`
}

// AnyApprover, as an approval rule's user, lets anyone approve who can reach the operator API
// with a token or click in the Slack channel: the built-in policies use it, as they cannot know
// the operators' names.
const AnyApprover = "*"

// ApprovalRule says who may approve, how many must, for how long the request stays open, and
// from which step risk on approval is needed, and from which on each step needs its own.
type ApprovalRule struct {
	// Users are Slack user IDs or operator names that may approve; AnyApprover lets
	// everyone who can answer (an operator token, or a signed Slack click) approve.
	Users []string `json:"users,omitempty"`
	// Groups are Slack user group IDs whose members may approve.
	Groups []string `json:"groups,omitempty"`
	// Required is how many distinct approvers are needed (2 is the two-person rule).
	Required int `json:"required"`
	// Timeout is how long a request stays open before the incident is rejected as expired.
	Timeout Duration `json:"timeout"`
	// FromRisk gates the first step whose risk is at least this; its approval covers the
	// steps after it.
	FromRisk Risk `json:"from_risk"`
	// PerStepFrom, when set (at or above FromRisk), gates every step whose risk is at least
	// this with a fresh approval of its own: an approval given for an earlier, lesser step
	// does not stand for one that cannot be undone.
	PerStepFrom Risk `json:"per_step_from,omitempty"`
}

// PerStep says whether a step of risk r waits for an approval of its own under the rule.
func (r *ApprovalRule) PerStep(risk Risk) bool {
	return r != nil && r.PerStepFrom != "" && risk.AtLeast(r.PerStepFrom)
}

// What a remediation does outside its maintenance windows.
const (
	OutsideWait    = "wait"
	OutsideApprove = "approve"
)

// Maintenance is when a remediation may start without asking.
type Maintenance struct {
	Windows []Window `json:"windows"`
	// Outside is OutsideWait (start when a window opens) or OutsideApprove (ask a human).
	Outside string `json:"outside"`
}

// Risks lists the risk levels from harmless to irreversible.
var Risks = []Risk{RiskReadOnly, RiskLow, RiskHigh, RiskDestructive}

// AtLeast says whether r is as risky as other or more. A risk that is not one of Risks (a
// step that forgot to declare one) counts as destructive.
func (r Risk) AtLeast(other Risk) bool {
	rank := func(x Risk) int {
		if i := slices.Index(Risks, x); i >= 0 {
			return i
		}
		return len(Risks) - 1
	}
	return rank(r) >= rank(other)
}

// ApprovalRequest is an incident's open (or answered) request for approval.
type ApprovalRequest struct {
	// Gate is the step the remediation waits before.
	Gate string `json:"gate"`
	// Reason says why approval is needed.
	Reason      string     `json:"reason"`
	Required    int        `json:"required"`
	RequestedAt time.Time  `json:"requested_at"`
	ExpiresAt   time.Time  `json:"expires_at"`
	Approvals   []Approval `json:"approvals,omitempty"`
	// Granted is set once enough distinct approvers approved; it covers the rest of the run,
	// but the steps the rule's PerStepFrom gates one by one.
	Granted bool `json:"granted"`
}

// Approval is one human's answer.
type Approval struct {
	// By is the person: an operator's name, or a Slack user ID that names no operator.
	By string `json:"by"`
	// ChatID is their Slack user ID, when they answered in Slack.
	ChatID  string    `json:"chat_id,omitempty"`
	Via     string    `json:"via"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment,omitempty"`
}

// ApprovedBy says whether the named approver has approved already.
func (a *ApprovalRequest) ApprovedBy(name string) bool {
	return slices.ContainsFunc(a.Approvals, func(x Approval) bool { return x.By == name })
}

// Later is an error saying that the work cannot happen yet and when to look again; the queue
// delivers the message again then, without counting it as a failure.
type Later struct {
	After  time.Duration
	Reason string
}

// Error returns the reason.
func (l *Later) Error() string { return fmt.Sprintf("not yet (again in %s): %s", l.After, l.Reason) }

// RetryLater returns a *Later.
func RetryLater(after time.Duration, format string, args ...any) error {
	return &Later{After: max(after, time.Second), Reason: fmt.Sprintf(format, args...)}
}

// Where answers come from.
const (
	// ViaSlack is a click in Slack; By is the user's ID, as Slack signed it.
	ViaSlack = "slack"
	// ViaAPI is the operator API with an operator's own token; By is the token's operator.
	ViaAPI = "api"
	// ViaSharedAPI is the operator API with the shared token; By is the name the caller gave,
	// which nothing verifies: at most one such approval counts towards a request.
	ViaSharedAPI = "api-shared"
)

// Answer is a human's approval or rejection of an incident's request.
type Answer struct {
	Incident string `json:"incident"`
	// By is who answered: a Slack user ID, or an operator's name over the API.
	By string `json:"by"`
	// Person is whom the answer counts for: the operator a Slack user ID belongs to, or By.
	// The worker sets it; nothing received sets it.
	Person string `json:"-"`
	// Name is how to show By, such as a Slack user name.
	Name    string `json:"name,omitempty"`
	Via     string `json:"via"`
	Approve bool   `json:"approve"`
	Comment string `json:"comment,omitempty"`
	// Channel is where the answer was given, to tell a refused user why.
	Channel string `json:"channel,omitempty"`
	// Gate and Attempt, when set, are the request the answerer saw (the step it waits before,
	// and the run's attempt): the answer counts for that request only, never for one opened
	// since, which may ask for something more destructive.
	Gate    string `json:"gate,omitempty"`
	Attempt int    `json:"attempt,omitempty"`
}

// AnswerValue is what an answer button carries: the incident, and the request it answers.
func AnswerValue(inc *Incident) string {
	gate := ""
	if inc.Approval != nil {
		gate = inc.Approval.Gate
	}
	return fmt.Sprintf("%s:%s:%d", inc.ID, gate, max(inc.Attempt, 1))
}

// ParseAnswerValue reads an answer button's value (AnswerValue, or the incident ID alone, as
// messages before it carried).
func ParseAnswerValue(v string) (incident, gate string, attempt int) {
	incident, rest, _ := strings.Cut(v, ":")
	gate, n, _ := strings.Cut(rest, ":")
	attempt, _ = strconv.Atoi(n)
	return incident, gate, attempt
}

// Who names the answerer for people: "alice (U01ALICE)".
func (a Answer) Who() string {
	name := a.Name
	if a.Person != "" && a.Person != a.By {
		name = a.Person
	}
	if name == "" || name == a.By {
		return a.By
	}
	return name + " (" + a.By + ")"
}

// slackUserID is what a Slack user ID looks like (members U..., Enterprise Grid W...).
var slackUserID = regexp.MustCompile(`^[UW][A-Z0-9]{6,}$`)

// LooksLikeSlackID says whether name could be a Slack user ID. The shared operator token,
// which anyone holding it may use under any name, cannot name one: it would pass for that
// person's click.
func LooksLikeSlackID(name string) bool { return slackUserID.MatchString(name) }

// ChatMember is what chat says of a user who answered there: whether they are a full member
// of the workspace the bot belongs to. Guests and users of other workspaces (Slack Connect)
// are not, and only approve where a policy names them.
type ChatMember struct {
	ID string `json:"id"`
	// Guest is a single- or multi-channel guest.
	Guest bool `json:"guest,omitempty"`
	// External is a user of another workspace, in a shared channel.
	External bool `json:"external,omitempty"`
	// Bot and Deleted users never approve.
	Bot     bool `json:"bot,omitempty"`
	Deleted bool `json:"deleted,omitempty"`
}

// FullMember says whether the user is a person of the bot's own workspace, with a full
// account.
func (m ChatMember) FullMember() bool { return !m.Guest && !m.External && !m.Bot && !m.Deleted }

// Notice asks the notifier to bring the humans up to date on an incident: the incident's
// message and thread are synced with its state, and Ephemeral, if set, is shown to one user.
// A notice with Home instead asks for that chat user's App Home to be drawn afresh.
type Notice struct {
	Incident  string     `json:"incident,omitempty"`
	Ephemeral *Ephemeral `json:"ephemeral,omitempty"`
	Home      string     `json:"home,omitempty"`
}

// Ephemeral is a message only one user sees, such as why their click was refused.
type Ephemeral struct {
	User    string `json:"user"`
	Channel string `json:"channel"`
	Text    string `json:"text"`
}
