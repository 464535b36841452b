package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/remediator/remediator"
)

// runRequest is the body of a run message.
type runRequest struct {
	Incident string `json:"incident"`
}

// errClosed is a claim held by an incident that is over.
var errClosed = remediator.Errorf(remediator.ECONFLICT, "the open incident closed while alerts were joining it")

// signalsBefore is how far before an incident opens the signals that surround it go.
const signalsBefore = 15 * time.Minute

// claimGrace is how long a claimed incident may take to be stored; a claim older than that
// with no incident is left over from a worker that died in between.
const claimGrace = time.Minute

// group is the alerts of the batches that one incident answers.
type group struct {
	cluster  string
	decision remediator.Decision
	alerts   []remediator.Arrival
}

// Correlate turns enqueued batches of alerts into incidents: each alert is matched to a
// policy, and the alerts for the same cluster and remediation join the incident open for
// them, or open one: the alerts of many batches for one incident join it in one update.
// Alerts that only resolve join the incident they fired into. It is safe to run again on the
// same batches: evidence is not counted twice and an open incident is only opened once.
func (w *Worker) Correlate(ctx context.Context, data ...[]byte) error {
	var tagged []remediator.Arrival
	for _, d := range data {
		var b remediator.Batch
		if err := json.Unmarshal(d, &b); err != nil {
			return remediator.Errorf(remediator.EINVALID, "batch: %w", err)
		}
		// One intake request, delivered again, brings the same arrivals; the same alerts sent
		// again later (a repeat) are a new request, received at another time.
		tag := b.ID + "@" + b.ReceivedAt.UTC().Format(time.RFC3339Nano)
		for _, a := range b.Alerts {
			tagged = append(tagged, remediator.Arrival{Batch: tag, Alert: a})
		}
	}
	var (
		groups   []*group
		around   []remediator.Arrival
		resolved []remediator.Arrival
		repeated = map[string][]remediator.Arrival{}
	)
	for _, a := range tagged {
		log := w.Log.With("batch", a.Batch)
		if a.Context {
			// The intake could not vouch for its source (an event of a tenant's object):
			// whatever it says, it is evidence around incidents, and starts none.
			around = append(around, a)
			continue
		}
		d, ok, err := w.Policies.Match(a.Alert)
		if err != nil {
			log.Warn("a policy could not be evaluated on an alert", "alert", a.Name(), "fingerprint", a.Fingerprint, "err", err)
		}
		switch {
		case !ok && a.Source == remediator.SourceKubernetes:
			// A probe failure or a back-off says something is wrong, not what: it is
			// evidence for the incidents around it on its cluster.
			a.Context = true
			around = append(around, a)
			continue
		case !ok:
			log.Debug("no policy matches the alert", "alert", a.Name(), "fingerprint", a.Fingerprint)
			w.alerts.WithLabelValues("unmatched").Inc()
			continue
		case d.Mode == remediator.ModeContext:
			a.Context = true
			around = append(around, a)
			continue
		case d.Mode == remediator.ModeDeny:
			log.Info("policy denies remediation for the alert", "alert", a.Name(), "policy", d.Policy, "cluster", a.Cluster)
			w.alerts.WithLabelValues("denied").Inc()
			continue
		}
		if a.Status == remediator.AlertResolved {
			// It goes to the incident it fired into, whatever fires beside it.
			resolved = append(resolved, a)
			continue
		}
		// A firing alert sent again (in a notification where another alert resolved, or an
		// event whose count grew) is the evidence it already is, updated: it does not open an
		// incident again after its own has finished.
		id, err := w.holder(ctx, a.Alert)
		if err != nil {
			return err
		}
		if id != "" {
			repeated[id] = append(repeated[id], a)
			continue
		}
		i := slices.IndexFunc(groups, func(g *group) bool { return g.cluster == a.Cluster && g.decision.Remediation == d.Remediation })
		if i < 0 {
			groups = append(groups, &group{cluster: a.Cluster, decision: d})
			i = len(groups) - 1
		}
		groups[i].alerts = append(groups[i].alerts, a)
	}
	if err := w.resolve(ctx, resolved); err != nil {
		return err
	}
	for _, g := range groups {
		if err := w.correlate(ctx, g); err != nil {
			return err
		}
	}
	for _, id := range slices.Sorted(maps.Keys(repeated)) {
		if err := w.join(ctx, id, repeated[id]); err != nil && remediator.ErrorCode(err) != remediator.ENOTFOUND {
			return err
		}
	}
	return w.surround(ctx, around)
}

// stillFiringAfter is how long after a remediation succeeded an alert may still be sent as
// firing before the humans are told: Alertmanager re-sends an alert that did not resolve.
const stillFiringAfter = 10 * time.Minute

// stillFiring tells the humans, once per alert, when an alert of a remediation that succeeded
// is still sent as firing long after: the problem is not fixed, or is back, and a re-sent
// alert opens no new incident.
func (w *Worker) stillFiring(inc *remediator.Incident, alerts []remediator.Arrival) {
	now := w.Now()
	if inc.State != remediator.StateSucceeded || inc.Closed() || now.Sub(inc.FinishedAt) < stillFiringAfter {
		return
	}
	for _, a := range alerts {
		if !a.Resolves() || a.Status != remediator.AlertFiring {
			continue
		}
		mark := fmt.Sprintf("(fingerprint %s) still fires", a.Fingerprint)
		if slices.ContainsFunc(inc.Timeline, func(e remediator.Event) bool { return strings.Contains(e.Message, mark) }) {
			continue
		}
		inc.Record(now, remediator.EventNotice, "", "%s %s %s after the remediation succeeded: the problem is not fixed or is back; look at it", a.Name(), mark, now.Sub(inc.FinishedAt).Round(time.Second))
	}
}

// holder returns the incident that already holds this observation of the alert, or "".
func (w *Worker) holder(ctx context.Context, a remediator.Alert) (string, error) {
	id, err := w.Store.AlertIncident(ctx, a.Fingerprint)
	if err == nil {
		var holds bool
		if holds, err = w.Store.HoldsAlert(ctx, id, a); err == nil && holds {
			return id, nil
		}
	}
	if err != nil && remediator.ErrorCode(err) != remediator.ENOTFOUND {
		return "", err
	}
	return "", nil
}

// surround keeps signals that answer no policy by themselves, for incidents that open soon
// after them, and adds them to the incidents open on their cluster now.
func (w *Worker) surround(ctx context.Context, signals []remediator.Arrival) error {
	byCluster := map[string][]remediator.Arrival{}
	for _, a := range signals {
		if err := w.Store.RememberSignal(ctx, a.Alert); err != nil {
			return err
		}
		byCluster[a.Cluster] = append(byCluster[a.Cluster], a)
	}
	for _, cluster := range slices.Sorted(maps.Keys(byCluster)) {
		ids, err := w.Store.OpenOn(ctx, cluster)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			w.Log.Debug("signals kept for the incidents that may follow", "cluster", cluster, "signals", len(byCluster[cluster]))
			w.alerts.WithLabelValues("kept").Add(float64(len(byCluster[cluster])))
			continue
		}
		var opening []string
		for _, id := range ids {
			err := w.join(ctx, id, byCluster[cluster])
			switch {
			case remediator.ErrorCode(err) == remediator.ENOTFOUND && w.Now().Sub(openedAt(id)) < claimGrace:
				opening = append(opening, id) // claimed, not stored yet: it will want these
			case remediator.ErrorCode(err) == remediator.ENOTFOUND:
				w.Log.Warn("an open claim names an incident that was never stored; signals not added to it", "incident", id, "cluster", cluster)
			case err != nil:
				return err
			}
		}
		if len(opening) > 0 {
			return remediator.Errorf(remediator.EUNAVAILABLE, "incidents %s are opening on cluster %s: try the signals again", strings.Join(opening, ", "), cluster)
		}
	}
	return nil
}

// join adds alerts to an incident as evidence (updating what it holds of them) and indexes
// them to it.
func (w *Worker) join(ctx context.Context, id string, alerts []remediator.Arrival) error {
	inc, err := w.Store.Join(ctx, id, alerts, nil, func(inc *remediator.Incident) { w.stillFiring(inc, alerts) })
	if err != nil {
		return err
	}
	w.Log.Info("signals joined an incident", "incident", id, "signals", len(alerts), "state", inc.State, "evidence_count", inc.EvidenceCount)
	w.alerts.WithLabelValues("attached").Add(float64(len(alerts)))
	w.notify(ctx, inc, nil)
	return nil
}

// rejoinWithin is how long after its last evidence an incident that ended with its alerts
// still firing takes more alerts of its cluster and remediation: a storm that goes on past
// the end of its incident (a dry-run, a failure) is the same problem, not a new incident per
// batch.
const rejoinWithin = 10 * time.Minute

// correlate adds a group of firing alerts to the incident open for their cluster and
// remediation (or to the one that just ended with the problem still there), or opens one.
func (w *Worker) correlate(ctx context.Context, g *group) error {
	now := w.Now()
	log := w.Log.With("cluster", g.cluster, "remediation", g.decision.Remediation)
	arrived := time.Time{}
	for _, a := range g.alerts {
		if a.ReceivedAt.After(arrived) {
			arrived = a.ReceivedAt
		}
	}
	if id, err := w.justEnded(ctx, g.cluster, g.decision.Remediation, arrived); err != nil || id != "" {
		if err != nil {
			return err
		}
		inc, err := w.Store.Join(ctx, id, g.alerts, func(inc *remediator.Incident) error {
			if !rejoins(inc, arrived) {
				return errClosed
			}
			return nil
		}, func(inc *remediator.Incident) { w.stillFiring(inc, g.alerts) })
		if err == nil {
			log.Info("alerts joined the incident that just ended, as the problem goes on", "incident", id, "alerts", len(g.alerts), "evidence_count", inc.EvidenceCount)
			w.alerts.WithLabelValues("attached").Add(float64(len(g.alerts)))
			w.notify(ctx, inc, nil)
			return nil
		}
		if !errors.Is(err, errClosed) {
			return err
		}
	}
	var (
		id  string
		inc *remediator.Incident
		err error
	)
	notOver := func(inc *remediator.Incident) error {
		if inc.State.Terminal() {
			return errClosed
		}
		return nil
	}
	for range 3 {
		if id, err = w.Store.ClaimOpen(ctx, g.cluster, g.decision.Remediation, newID(now)); err != nil {
			return err
		}
		inc, err = w.Store.Join(ctx, id, g.alerts, notOver, nil)
		if !errors.Is(err, errClosed) {
			break
		}
		// The incident closed but still holds the claim (its release failed, or is racing
		// us): free it, and claim again.
		if err := w.Store.ReleaseOpen(ctx, g.cluster, g.decision.Remediation, id); err != nil {
			return err
		}
	}
	log = log.With("incident", id)
	switch remediator.ErrorCode(err) {
	case "":
		log.Info("alerts joined the open incident", "alerts", len(g.alerts), "state", inc.State, "evidence_count", inc.EvidenceCount)
		w.alerts.WithLabelValues("attached").Add(float64(len(g.alerts)))
	case remediator.ENOTFOUND:
		// The claim is ours (or an earlier attempt's that stopped before creating it). The
		// signals just before it, such as the probe failures, are its evidence too.
		recent, err := w.Store.RecentSignals(ctx, g.cluster, now.Add(-signalsBefore))
		if err != nil {
			return err
		}
		opened := remediator.NewIncident(id, g.cluster, g.decision, now)
		opened.Title = w.Remediations.Title(g.decision.Remediation)
		if err := w.Store.Create(ctx, opened); err != nil {
			return err // a conflict means another worker adopted it: retry and join it
		}
		arrivals := slices.Clone(g.alerts)
		for _, a := range recent {
			arrivals = append(arrivals, remediator.Arrival{Batch: "around-" + id, Alert: a})
		}
		if inc, err = w.Store.Join(ctx, id, arrivals, nil, nil); err != nil {
			return err
		}
		log.Info("incident opened", "policy", g.decision.Policy, "mode", g.decision.Mode, "alerts", len(g.alerts), "signals_around", len(recent))
		w.alerts.WithLabelValues("opened").Add(float64(len(g.alerts)))
	default:
		return err
	}
	w.notify(ctx, inc, nil)
	if inc.State == remediator.StatePending {
		return w.requestRun(ctx, id)
	}
	return nil
}

// justEnded returns the last incident of the cluster and remediation if it ended while its
// problem goes on (see rejoins), or "".
func (w *Worker) justEnded(ctx context.Context, cluster, remediation string, arrived time.Time) (string, error) {
	runs, err := w.Store.Runs(ctx, cluster, remediation)
	if err != nil || len(runs) == 0 {
		return "", err
	}
	last := runs[len(runs)-1]
	if w.Now().Sub(last.FinishedAt) > 24*time.Hour {
		return "", nil // long over: no need to read it
	}
	inc, err := w.Store.Get(ctx, last.Incident)
	switch {
	case remediator.ErrorCode(err) == remediator.ENOTFOUND:
		return "", nil
	case err != nil:
		return "", err
	case !rejoins(inc, arrived):
		return "", nil
	}
	return inc.ID, nil
}

// rejoins says whether an incident that ended takes alerts that arrived at a time: its alerts
// still fire, and its last evidence came within rejoinWithin before. (Both times are the
// intake's clock.)
func rejoins(inc *remediator.Incident, arrived time.Time) bool {
	return inc.State.Terminal() && !inc.Closed() && arrived.Sub(inc.EvidenceStats.LastAt) < rejoinWithin
}

// resolve adds resolved alerts to the incidents they fired into.
func (w *Worker) resolve(ctx context.Context, alerts []remediator.Arrival) error {
	byIncident := map[string][]remediator.Arrival{}
	for _, a := range alerts {
		id, err := w.Store.AlertIncident(ctx, a.Fingerprint)
		if remediator.ErrorCode(err) == remediator.ENOTFOUND {
			w.Log.Info("resolved alert belongs to no incident", "alert", a.Name(), "fingerprint", a.Fingerprint)
			continue
		}
		if err != nil {
			return err
		}
		byIncident[id] = append(byIncident[id], a)
	}
	for _, id := range slices.Sorted(maps.Keys(byIncident)) {
		inc, err := w.Store.Join(ctx, id, byIncident[id], nil, func(inc *remediator.Incident) {
			if inc.State == remediator.StateAwaitingApproval && inc.AlertsResolved() {
				now := w.Now()
				reason := "every alert resolved while the incident waited for approval"
				inc.SkipPending(reason)
				inc.SetState(remediator.StateCancelled, reason, now)
			}
		})
		if err != nil {
			return err
		}
		w.Log.Info("resolved alerts joined their incident", "incident", id, "alerts", len(byIncident[id]), "state", inc.State)
		w.alerts.WithLabelValues("resolved").Add(float64(len(byIncident[id])))
		w.notify(ctx, inc, nil)
	}
	return nil
}

// requestRun enqueues the incident for the executor, once.
func (w *Worker) requestRun(ctx context.Context, id string) error {
	return w.requestRunFor(ctx, id, "")
}

// requestRunFor enqueues the incident for the executor once for each why: a run after a
// cancel or a retry is another request than the first.
func (w *Worker) requestRunFor(ctx context.Context, id, why string) error {
	data, err := json.Marshal(runRequest{Incident: id})
	if err != nil {
		return err
	}
	key := "run-" + id
	if why != "" {
		key += "-" + why
	}
	_, err = w.Publisher.Publish(ctx, w.RunSubject, data, key)
	return err
}
