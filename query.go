package remediator

import "time"

// DefaultPageSize is how many incidents a page holds when the caller does not say.
const DefaultPageSize = 50

// MaxPageSize bounds a page.
const MaxPageSize = 500

// Query selects a page of incidents: those in a state, on a cluster, from a cursor.
type Query struct {
	State   State
	Cluster string
	Limit   int
	// Cursor is where the page starts: the Next of the page before, or "" for the newest.
	Cursor string
}

// Matches says whether an incident is one the query asks for.
func (q Query) Matches(inc *Incident) bool {
	return (q.State == "" || inc.State == q.State) && (q.Cluster == "" || inc.Cluster == q.Cluster)
}

// Page is some incidents, the newest first, and where the next page starts ("" at the end).
type Page struct {
	Incidents []*Incident `json:"incidents"`
	Next      string      `json:"next_cursor,omitempty"`
}

// RunsKept is how many of the last runs of each cluster and remediation the store remembers
// for the gates: more than any policy's max_attempts may be, and the last for the cooldown.
const RunsKept = 100

// Run is what the gates need to know of an earlier incident of the same cluster and
// remediation: whether and when its remediation changed something, and when it ended.
type Run struct {
	Incident string `json:"incident"`
	// Attempt is the incident's run this was: 2 and on after a retry.
	Attempt int   `json:"attempt,omitempty"`
	State   State `json:"state"`
	// Changed is when its first step that changes something started; zero if none did.
	Changed    time.Time `json:"changed,omitzero"`
	FinishedAt time.Time `json:"finished_at"`
}

// Run sums the incident up for the gates of the incidents after it.
func (inc *Incident) Run() Run {
	r := Run{Incident: inc.ID, Attempt: max(inc.Attempt, 1), State: inc.State, FinishedAt: inc.FinishedAt}
	for _, s := range inc.Steps {
		if s.Risk != RiskReadOnly && !s.StartedAt.IsZero() {
			r.Changed = s.StartedAt
			break
		}
	}
	return r
}
