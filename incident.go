package remediator

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// State is where an incident is in its life.
type State string

// The incident states. The last five are terminal.
const (
	StatePending          State = "pending"
	StateAwaitingApproval State = "awaiting_approval"
	StateRunning          State = "running"
	StateSucceeded        State = "succeeded"
	StateFailed           State = "failed"
	StateRejected         State = "rejected"
	StateSkipped          State = "skipped"
	StateCancelled        State = "cancelled"
)

// States lists every state, in the order a report or a metric shows them.
var States = []State{StatePending, StateAwaitingApproval, StateRunning, StateSucceeded,
	StateFailed, StateRejected, StateSkipped, StateCancelled}

// Terminal says whether the incident is over: nothing more will run for it.
func (s State) Terminal() bool {
	switch s {
	case StateSucceeded, StateFailed, StateRejected, StateSkipped, StateCancelled:
		return true
	}
	return false
}

// StepState is where one step of a remediation is.
type StepState string

// The step states.
const (
	StepPending   StepState = "pending"
	StepRunning   StepState = "running"
	StepSucceeded StepState = "succeeded"
	StepFailed    StepState = "failed"
	StepSkipped   StepState = "skipped"
)

// Step is the record of one step of an incident's remediation: what it planned and what it did.
type Step struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Risk        Risk      `json:"risk"`
	Always      bool      `json:"always,omitempty"`
	State       StepState `json:"state"`
	Attempts    int       `json:"attempts"`
	// MaxAttempts is how many attempts the step has, and RetryAt when the next one starts
	// after an attempt that failed in a way that may pass.
	MaxAttempts int       `json:"max_attempts,omitempty"`
	RetryAt     time.Time `json:"retry_at,omitzero"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	Output      string    `json:"output,omitempty"`
	Error       string    `json:"error,omitempty"`
	// Progress is what an interrupted attempt had finished, so that the next attempt resumes
	// instead of repeating it.
	Progress json.RawMessage `json:"progress,omitempty"`
	// Undo says how a human undoes the step, as its plan says, for whoever is asked to
	// approve it.
	Undo string `json:"undo,omitempty"`
}

// About says what the incident's remediation does, for people: its title, or the
// remediation's name in incidents stored before there were titles.
func (inc *Incident) About() string {
	if inc.Title != "" {
		return inc.Title
	}
	return inc.Remediation
}

// ReportPath is where the API serves an incident's HTML report, below the base URL.
func ReportPath(id string) string {
	return "/api/v1/incidents/" + url.PathEscape(id) + "/report?format=html"
}

// Duration is how long the step ran, or zero if it has not finished.
func (s Step) Duration() time.Duration {
	if s.StartedAt.IsZero() || s.FinishedAt.IsZero() {
		return 0
	}
	return s.FinishedAt.Sub(s.StartedAt)
}

// Event kinds in an incident's timeline.
const (
	EventOpened        = "opened"
	EventEvidence      = "evidence"
	EventState         = "state"
	EventStepStarted   = "step_started"
	EventStepSucceeded = "step_succeeded"
	EventStepFailed    = "step_failed"
	EventStepRetry     = "step_retry"
	EventStepSkipped   = "step_skipped"
	// EventWaiting is a run held back: by the cluster lock or a maintenance window.
	EventWaiting = "waiting"
	// EventApprovalRequested, EventApproved, EventRejected and EventExpired are the life of
	// an approval request: asked, answered yes or no, or left unanswered past its timeout.
	EventApprovalRequested = "approval_requested"
	EventApproved          = "approved"
	EventRejected          = "rejected"
	EventExpired           = "expired"
	// EventRefused is an approval or rejection that was not accepted, and why.
	EventRefused = "refused"
	// EventNotice is something the incident reported to the humans without acting.
	EventNotice = "notice"
	// EventClosed is the end of an incident: its remediation is over and none of its alerts
	// fires any more.
	EventClosed = "closed"
)

// Event is one line of an incident's timeline.
type Event struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Step    string    `json:"step,omitempty"`
	Message string    `json:"message"`
}

// MemberStatus is what one etcd member reported at one moment: the figures a report compares
// before and after a remediation.
type MemberStatus struct {
	ID          string   `json:"id"`
	ClusterID   string   `json:"cluster_id,omitempty"`
	Name        string   `json:"name"`
	Endpoint    string   `json:"endpoint"`
	Version     string   `json:"version,omitempty"`
	Leader      bool     `json:"leader"`
	Learner     bool     `json:"learner,omitempty"`
	DBSize      int64    `json:"db_size"`
	DBSizeInUse int64    `json:"db_size_in_use"`
	Quota       int64    `json:"quota"`
	Revision    int64    `json:"revision"`
	RaftIndex   uint64   `json:"raft_index"`
	RaftTerm    uint64   `json:"raft_term"`
	Alarms      []string `json:"alarms,omitempty"`
	// FsyncP99 is the 99th percentile of the member's WAL fsync duration in seconds, where a
	// remediation measured it.
	FsyncP99 float64 `json:"fsync_p99_seconds,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// QuotaText is the member's quota as a person reads it: "16 MiB quota", or "quota unknown"
// where the member told it neither in its status nor in its metrics.
func (s MemberStatus) QuotaText() string {
	if s.Quota <= 0 {
		return "quota unknown"
	}
	return HumanBytes(s.Quota) + " quota"
}

// Incident is one problem on one cluster, the alerts that are its evidence, and the
// remediation that answers it.
type Incident struct {
	ID          string            `json:"id"`
	Cluster     string            `json:"cluster"`
	Remediation string            `json:"remediation"`
	Policy      string            `json:"policy"`
	Mode        Mode              `json:"mode"`
	Params      map[string]string `json:"params,omitempty"`
	// Title says what the remediation does, for people ("NOSPACE recovery with liveness
	// probes guarded"), as the catalogue named it when the incident opened; empty in
	// incidents stored before there were titles.
	Title string `json:"title,omitempty"`
	// Gates are the policy's rules the incident runs under.
	Gates Gates `json:"gates"`
	State State `json:"state"`
	// Reason says why the incident is in its state, when that is not obvious from it.
	Reason string `json:"reason,omitempty"`
	// Cancel is an operator's request to stop the run, once made.
	Cancel *Cancel `json:"cancel,omitempty"`
	// Attempt counts the runs of the incident: 2 after the first retry (0 or 1 before).
	Attempt int `json:"attempt,omitempty"`
	// Approval is the incident's request for approval, once one was made; PastApprovals are
	// the requests this attempt granted before it, oldest first, one per gate at most.
	Approval      *ApprovalRequest  `json:"approval,omitempty"`
	PastApprovals []ApprovalRequest `json:"past_approvals,omitempty"`
	// Chat is the chat message that tracks the incident, once one was posted.
	Chat *ChatMessage `json:"chat,omitempty"`
	// Evidence is the first and the latest EvidenceKept observations that joined, in detail;
	// EvidenceCount counts every one, and EvidenceStats sums them up. Each alert's full
	// trace is in the store.
	Evidence      []Alert        `json:"evidence"`
	EvidenceCount int            `json:"evidence_count"`
	EvidenceStats EvidenceStats  `json:"evidence_stats"`
	Steps         []Step         `json:"steps"`
	Before        []MemberStatus `json:"before,omitempty"`
	After         []MemberStatus `json:"after,omitempty"`
	// RootCause is what the remediation's steps found to be the cause, as far as they could
	// tell; FollowUps are what they leave to humans.
	RootCause string   `json:"root_cause,omitempty"`
	FollowUps []string `json:"follow_ups,omitempty"`
	Timeline  []Event  `json:"timeline"`
	// TimelineOmitted counts the events that gave way in the middle of a full timeline.
	TimelineOmitted int       `json:"timeline_omitted,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
	FinishedAt      time.Time `json:"finished_at,omitzero"`
	// ClosedAt is when the incident closed: finished, and none of its alerts firing.
	ClosedAt time.Time `json:"closed_at,omitzero"`
}

// ChatMessage is where an incident is reported in chat, and what its thread already holds.
type ChatMessage struct {
	Channel string `json:"channel"`
	// ID is the message's ID in its channel; empty while a notifier is posting it (since
	// ClaimedAt), so that two notifiers do not both post it.
	ID        string    `json:"id"`
	ClaimedAt time.Time `json:"claimed_at,omitzero"`
	// Posted lists the thread replies posted so far, by key, so that none is posted twice.
	Posted []string `json:"posted,omitempty"`
}

// NewIncident opens an incident for a decision about a cluster.
func NewIncident(id, cluster string, d Decision, now time.Time) *Incident {
	inc := &Incident{
		ID:          id,
		Cluster:     cluster,
		Remediation: d.Remediation,
		Policy:      d.Policy,
		Mode:        d.Mode,
		Params:      d.Params,
		Gates:       d.Gates,
		State:       StatePending,
		Evidence:    []Alert{},
		Steps:       []Step{},
		CreatedAt:   now,
		UpdatedAt:   now,
	}
	inc.Record(now, EventOpened, "", "incident opened on cluster %q for %s (policy %q, mode %s)",
		cluster, d.Remediation, d.Policy, d.Mode)
	return inc
}

// Record appends an event to the timeline. A full timeline keeps its beginning and its end:
// the event in its middle gives way, and is counted.
func (inc *Incident) Record(at time.Time, kind, step, format string, args ...any) {
	if len(inc.Timeline) >= maxTimeline {
		inc.Timeline = slices.Delete(inc.Timeline, maxTimeline/2, maxTimeline/2+1)
		inc.TimelineOmitted++
	}
	inc.Timeline = append(inc.Timeline, Event{At: at, Kind: kind, Step: step, Message: fmt.Sprintf(format, args...)})
	if at.After(inc.UpdatedAt) {
		inc.UpdatedAt = at // evidence from before the incident opened does not turn it back
	}
}

// AlertsResolved says whether the incident has alerts that resolve, and the latest word on
// each of them is "resolved".
func (inc *Incident) AlertsResolved() bool {
	resolvable, firing := inc.alertCounts()
	return resolvable > 0 && firing == 0
}

// alertCounts counts the incident's alerts that resolve, and those of them still firing.
func (inc *Incident) alertCounts() (resolvable, firing int) {
	return inc.EvidenceStats.Resolvable, inc.EvidenceStats.Firing
}

// CloseBy closes a finished incident by hand: its alerts will not resolve (they were
// silenced, or their source does not say when they resolve) and a human has dealt with it.
func (inc *Incident) CloseBy(at time.Time, by, reason string) error {
	switch {
	case strings.TrimSpace(reason) == "":
		return Errorf(EINVALID, "reason: say why the incident is closed by hand")
	case !inc.State.Terminal():
		return Errorf(EREFUSED, "incident %s is %s: reject it or let it finish before closing it", inc.ID, inc.State)
	case inc.Closed():
		return nil
	}
	_, firing := inc.alertCounts()
	inc.ClosedAt = at
	inc.Record(at, EventClosed, "", "closed by %s with %d alert(s) still firing: %s", by, firing, reason)
	return nil
}

// Closed says whether the incident is closed: nothing more will run for it and none of its
// alerts fires.
func (inc *Incident) Closed() bool { return !inc.ClosedAt.IsZero() }

// closeIfResolved closes a finished incident once none of its alerts fires any more: a
// remediation that succeeded is confirmed by its alerts resolving, and one that did not
// stays in front of the humans until they resolve.
func (inc *Incident) closeIfResolved(at time.Time) {
	if !inc.State.Terminal() || inc.Closed() {
		return
	}
	resolvable, firing := inc.alertCounts()
	if firing > 0 {
		return
	}
	if at.IsZero() || at.Before(inc.FinishedAt) {
		at = inc.FinishedAt
	}
	inc.ClosedAt = at
	if resolvable == 0 {
		inc.Record(at, EventClosed, "", "closed: no alert of the incident waits to resolve")
		return
	}
	inc.Record(at, EventClosed, "", "closed: every alert of the incident resolved")
}

// AddFindings keeps what a step found for the report: member figures, the root cause and the
// follow-ups, each follow-up once.
func (inc *Incident) AddFindings(res StepResult) {
	if res.Before != nil {
		inc.Before = res.Before
	}
	if res.After != nil {
		inc.After = res.After
	}
	if res.RootCause != "" {
		inc.RootCause = res.RootCause
	}
	for _, f := range res.FollowUps {
		if !slices.Contains(inc.FollowUps, f) {
			inc.FollowUps = append(inc.FollowUps, f)
		}
	}
}

// SetState moves the incident to a state, records why, and stamps the finish time of a
// terminal state.
func (inc *Incident) SetState(s State, reason string, at time.Time) {
	inc.State = s
	inc.Reason = reason
	msg := "state " + string(s)
	if reason != "" {
		msg += ": " + reason
	}
	inc.Record(at, EventState, "", "%s", msg)
	if s.Terminal() {
		inc.FinishedAt = at
		inc.closeIfResolved(at)
	}
}

// ReceivedAt is when the first of the incident's evidence (not the signals around it) reached
// remediator.
func (inc *Incident) ReceivedAt() time.Time {
	var first time.Time
	for _, a := range inc.Evidence {
		if a.Context {
			continue
		}
		if first.IsZero() || a.ReceivedAt.Before(first) {
			first = a.ReceivedAt
		}
	}
	return first
}

// TimeToRecovery is the time from the first webhook to the last step of a succeeded
// remediation (its verification), or zero if it has not recovered.
func (inc *Incident) TimeToRecovery() time.Duration {
	if inc.State != StateSucceeded || len(inc.Steps) == 0 || inc.ReceivedAt().IsZero() {
		return 0
	}
	return inc.Steps[len(inc.Steps)-1].FinishedAt.Sub(inc.ReceivedAt())
}
