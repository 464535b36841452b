// Package worker decides and acts: it correlates enqueued alerts into incidents through the
// policies, and runs each incident's remediation step by step, recording every step in the
// incident so that a restarted worker resumes after the last step that finished.
package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/remediator/remediator"
)

// Store keeps incidents.
type Store interface {
	Get(ctx context.Context, id string) (*remediator.Incident, error)
	// Open lists the incidents not over yet.
	Open(ctx context.Context) ([]*remediator.Incident, error)
	// Runs lists the recent finished incidents of a cluster and remediation, for the gates.
	Runs(ctx context.Context, cluster, remediation string) ([]remediator.Run, error)
	Create(ctx context.Context, inc *remediator.Incident) error
	Update(ctx context.Context, id string, fn func(*remediator.Incident) error) (*remediator.Incident, error)
	ClaimOpen(ctx context.Context, cluster, remediation, id string) (string, error)
	ReleaseOpen(ctx context.Context, cluster, remediation, id string) error
	// Join adds arrivals to an incident's evidence in one update, accept deciding whether it
	// still takes them and then changing it further on the way.
	Join(ctx context.Context, id string, alerts []remediator.Arrival, accept func(*remediator.Incident) error, then func(*remediator.Incident)) (*remediator.Incident, error)
	// HoldsAlert says whether the incident holds this observation of an alert already.
	HoldsAlert(ctx context.Context, id string, a remediator.Alert) (bool, error)
	AlertIncident(ctx context.Context, fingerprint string) (string, error)
	// OpenOn lists the incidents open on a cluster.
	OpenOn(ctx context.Context, cluster string) ([]string, error)
	// RememberSignal and RecentSignals keep the signals that answer no policy by themselves
	// for a while, for the incidents that open around them.
	RememberSignal(ctx context.Context, a remediator.Alert) error
	RecentSignals(ctx context.Context, cluster string, since time.Time) ([]remediator.Alert, error)
}

// Publisher enqueues a message once per msgID.
type Publisher interface {
	Publish(ctx context.Context, subject string, data []byte, msgID string) (duplicate bool, err error)
}

// Matcher decides which remediation, if any, answers an alert.
type Matcher interface {
	Match(a remediator.Alert) (remediator.Decision, bool, error)
}

// Planner turns a remediation's name and parameters into its steps.
type Planner interface {
	Plan(name string, params map[string]string) ([]remediator.PlannedStep, error)
	// Title says what a remediation does, for people: a wrapper's title names what it wraps.
	Title(name string) string
}

// Locker holds one lock per cluster, refreshed by its holder and expiring by itself.
type Locker interface {
	// Acquire takes the lock for holder, or returns who holds it.
	Acquire(ctx context.Context, cluster, holder string) (owner string, err error)
	Refresh(ctx context.Context, cluster, holder string) error
	Release(ctx context.Context, cluster, holder string) error
	// Fence records the step the holder runs and its deadline, and Unfence its end: a new
	// holder does not start while a step of the last one may still run.
	Fence(ctx context.Context, cluster, holder, step string, deadline time.Time) error
	Unfence(ctx context.Context, cluster, holder string) error
	TTL() time.Duration
}

// GroupResolver lists the members of a chat user group.
type GroupResolver interface {
	Members(ctx context.Context, group string) ([]string, error)
}

// MemberResolver says whether a chat user is a full member of the workspace: with a rule
// that lets anyone approve, guests and users of other workspaces may not.
type MemberResolver interface {
	Member(ctx context.Context, userID string) (remediator.ChatMember, error)
}

// Config is what a worker needs.
type Config struct {
	Store     Store
	Publisher Publisher
	Locks     Locker
	// RunSubject, ExpireSubject and NotifySubject are where run requests, approval deadlines
	// and notices go; without NotifySubject nobody is notified.
	RunSubject    string
	ExpireSubject string
	NotifySubject string
	Policies      Matcher
	Remediations  Planner
	// Groups resolves chat user groups named by approval rules, and Members tells full members
	// of the workspace from guests; nil if there is no chat.
	Groups  GroupResolver
	Members MemberResolver
	// People maps chat user IDs to the operators they are (api.operators_file's slack_id),
	// so that a person's click in chat and their answer over the API count as one.
	People map[string]string
	// Pauses are the clusters operators paused (nil: none can be); a run held back by one
	// looks again every PauseRecheck (DefaultPauseRecheck if zero).
	Pauses       PauseStore
	PauseRecheck time.Duration
	// RetryDelay is how long a step whose attempt failed in a way that may pass waits for its
	// next (by the attempts it had), recorded in the step; nil leaves the delay to the
	// queue's backoff, unrecorded.
	RetryDelay func(attempts int) time.Duration
	// CancelPoll is how often a read-only or low-risk step looks for a cancel, to be cut
	// short (DefaultCancelPoll if zero).
	CancelPoll time.Duration
	// Draining says that this worker is shutting down (SIGTERM, a scale-in): a run finishes
	// the step it is in and hands the rest back to the queue, for another worker; nil never.
	Draining func() bool
	// DryRun runs nothing anywhere: every incident is planned and skipped.
	DryRun bool
	// StepAttempts is how many times a step that fails in a way that may pass is tried before
	// the incident fails (DefaultStepAttempts if zero).
	StepAttempts int
	Registry     prometheus.Registerer
	Log          *slog.Logger
	Now          func() time.Time
}

// DefaultStepAttempts, with the queue's backoff, keeps trying a step for about half an hour.
const DefaultStepAttempts = 9

// DefaultCancelPoll is how often a step that may be cut short looks for a cancel.
const DefaultCancelPoll = time.Second

// Worker correlates alerts and runs remediations.
type Worker struct {
	Config
	// id tells this worker's locks from another replica's.
	id         string
	alerts     *prometheus.CounterVec
	admissions *prometheus.CounterVec
	steps      *prometheus.HistogramVec
}

// New returns a worker and registers its metrics.
func New(cfg Config) *Worker {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.StepAttempts == 0 {
		cfg.StepAttempts = DefaultStepAttempts
	}
	if cfg.PauseRecheck == 0 {
		cfg.PauseRecheck = DefaultPauseRecheck
	}
	if cfg.CancelPoll == 0 {
		cfg.CancelPoll = DefaultCancelPoll
	}
	w := &Worker{
		Config: cfg,
		id:     newID(cfg.Now()),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "remediator_alerts_correlated_total",
			Help: "Alerts the correlator handled, by outcome (opened, attached, resolved, unmatched, denied).",
		}, []string{"outcome"}),
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "remediator_admissions_total",
			Help: "What the gates decided about new runs: run, dry_run, skip, wait or approve.",
		}, []string{"verdict"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "remediator_step_duration_seconds",
			Help:    "How long remediation steps took, by remediation, step and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}, []string{"remediation", "step", "outcome"}),
	}
	cfg.Registry.MustRegister(w.alerts, w.admissions, w.steps, &stateCollector{store: cfg.Store, pauses: cfg.Pauses, log: cfg.Log})
	return w
}

// newID returns a new incident ID: sortable by time, unique by its random tail.
func newID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// openedAt is when an incident ID was made (newID), or the zero time for another ID.
func openedAt(id string) time.Time {
	if len(id) < len("20060102-150405") {
		return time.Time{}
	}
	t, _ := time.Parse("20060102-150405", id[:len("20060102-150405")])
	return t
}

// recordCtx is for saving an outcome after the work's own context was cancelled: the
// outcome of an interrupted step must still be written down.
func recordCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// stateCollector reports how many incidents are open in each state (pending, awaiting
// approval, running), read from the store's open claims at scrape time: every replica
// reports the same figures, and a scrape costs what is open, not what is stored.
type stateCollector struct {
	store  Store
	pauses PauseStore
	log    *slog.Logger
}

var (
	incidentsDesc = prometheus.NewDesc("remediator_incidents", "Open incidents by state (pending, awaiting_approval, running); remediator_incidents_finished_total counts those that ended.", []string{"state"}, nil)
	pausedDesc    = prometheus.NewDesc("remediator_cluster_paused", "1 for each cluster an operator paused (cluster=\"*\": every cluster); no step starts on it until resumed.", []string{"cluster"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- incidentsDesc; ch <- pausedDesc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	all, err := c.store.Open(ctx)
	if err != nil {
		c.log.Warn("incidents metric: cannot list incidents", "err", err)
		ch <- prometheus.NewInvalidMetric(incidentsDesc, err)
		return
	}
	if c.pauses != nil {
		pauses, err := c.pauses.List(ctx)
		if err != nil {
			c.log.Warn("paused metric: cannot list the pauses", "err", err)
			ch <- prometheus.NewInvalidMetric(pausedDesc, err)
		}
		for _, p := range pauses {
			ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, 1, p.Cluster)
		}
	}
	counts := map[remediator.State]int{}
	for _, inc := range all {
		counts[inc.State]++
	}
	for _, s := range remediator.States {
		if s.Terminal() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(incidentsDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}
