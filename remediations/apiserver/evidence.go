package apiserver

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/poll"
	"github.com/remediator/remediator/remediations/etcdops"
)

// symptoms are the lines of the seed's incident worth quoting from an alert: kube-apiserver's
// failed etcd checks, and etcd's requests that ran out of time. They include every text the
// built-in policy selects the remediation by, so that an incident it opened quotes its cause.
var symptoms = []string{"[-]etcd failed", "etcd failed: reason withheld", "[-]etcd-readiness failed", "took too long", "context deadline exceeded"}

// maxQuotes bounds the quoted lines: a few say it, a hundred bury it.
const maxQuotes = 10

// tookTooLong finds the duration in etcd's slow-request line, "took too long (2.000041013s)".
var tookTooLong = regexp.MustCompile(`took too long \(([0-9.]+(?:ns|us|µs|ms|s|m|h))\)`)

// disk is one member's disk latency as the evidence step judged it.
type disk struct {
	Member   string              `json:"member"`
	Endpoint string              `json:"endpoint"`
	Verdict  etcdops.DiskVerdict `json:"verdict,omitempty"`
	WALFsync time.Duration       `json:"wal_fsync_p99,omitempty"`
	Commit   time.Duration       `json:"backend_commit_p99,omitempty"`
	// Judgement is the sentence the operator reads: the p99s against etcd's guidance, or
	// why there are none.
	Judgement string `json:"judgement"`
}

func (d disk) String() string { return d.Member + " at " + d.Endpoint + ": " + d.Judgement }

// evidence is the evidence step's progress, which the report's root cause is made of.
type evidence struct {
	Quotes []string `json:"quotes,omitempty"`
	// SlowestRequest is the longest etcd request the alerts quote as taking too long.
	SlowestRequest time.Duration `json:"slowest_request,omitempty"`
	Disks          []disk        `json:"disks"`
}

func (e evidence) String() string {
	var lines []string
	if len(e.Quotes) == 0 {
		lines = append(lines, "the alerts quote no failed etcd check or slow etcd request")
	} else {
		lines = append(lines, "the alerts say:")
		for _, q := range e.Quotes {
			lines = append(lines, "  "+q)
		}
	}
	lines = append(lines, "etcd's disk latency, p99 against etcd's guidance:")
	for _, d := range e.Disks {
		lines = append(lines, "  "+d.String())
	}
	return strings.Join(append(lines, e.rootCause()), "\n")
}

func (r *run) evidence(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	saved, _, err := remediator.Progress[evidence](in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	if len(saved.Disks) > 0 {
		return saved.result(saved.String()+"\n(read by an earlier attempt)", nil), saved.nothingToDo()
	}
	ev := evidence{}
	ev.Quotes, ev.SlowestRequest = quote(in.Incident.Evidence)
	v, err := etcdops.Look(ctx, r.etcd, in.Incident.Cluster, false)
	if err != nil {
		return remediator.StepResult{Output: ev.String()}, err
	}
	members := v.Members
	hc, err := r.etcd.HTTPClient(in.Incident.Cluster)
	if err != nil {
		return remediator.StepResult{Output: ev.String()}, err
	}
	ev.Disks, err = r.measure(ctx, hc, members)
	if err != nil {
		return remediator.StepResult{Output: ev.String()}, err
	}
	if err := in.SaveProgress(ctx, ev); err != nil {
		return remediator.StepResult{}, err
	}
	// The members' figures, for the report: a member that does not answer is said so in its
	// status, and a failed alarm list only leaves the alarms out.
	statuses, err := etcdops.Status(ctx, v.Client, v.Members, hc)
	if err != nil {
		in.Log.Warn("member figures without alarms", "err", err)
	}
	return ev.result(ev.String(), statuses), ev.nothingToDo()
}

// nothingToDo is a *remediator.NothingToDo unless the evidence shows etcd slow to answer
// kube-apiserver's checks: an alert that quotes a failed check or a slow etcd request, or a
// member's disk over etcd's guidance. A longer timeout without either would answer a problem
// that is not there.
func (e evidence) nothingToDo() error {
	if len(e.Quotes) > 0 || slices.ContainsFunc(e.Disks, func(d disk) bool { return d.Verdict == etcdops.DiskSlow }) {
		return nil
	}
	return remediator.NothingToDof("the alerts quote no failed etcd check of kube-apiserver and no slow etcd request, and no member's disk is over etcd's guidance (%s): no sign that etcd answers kube-apiserver's checks too slowly",
		strings.TrimSuffix(e.diskSummary(), "."))
}

// result is the evidence step's result: its findings for the report, and the members' figures
// with the WAL fsync p99 it measured.
func (e evidence) result(output string, statuses []remediator.MemberStatus) remediator.StepResult {
	cause, followUp := e.findings()
	for i, st := range statuses {
		if j := slices.IndexFunc(e.Disks, func(d disk) bool { return d.Endpoint == st.Endpoint }); j >= 0 {
			statuses[i].FsyncP99 = e.Disks[j].WALFsync.Seconds()
		}
	}
	return remediator.StepResult{Output: output, RootCause: cause, FollowUps: []string{followUp}, Before: statuses}
}

// measure judges every member's disk: over the sample window when it saw enough writes to
// say how the disk does now, else over the member's whole life. A member that cannot be read
// is said so; the others are still judged.
func (r *run) measure(ctx context.Context, hc etcdops.HTTPDoer, members []etcdops.Member) ([]disk, error) {
	first := make([]etcdops.Latency, len(members))
	errs := make([]error, len(members))
	for i, m := range members {
		first[i], errs[i] = etcdops.DiskLatency(ctx, hc, m.Endpoint)
	}
	last := first
	if r.SampleWindow > 0 {
		if err := poll.Sleep(ctx, r.SampleWindow); err != nil {
			return nil, err
		}
		last = make([]etcdops.Latency, len(members))
		for i, m := range members {
			if errs[i] == nil {
				last[i], errs[i] = etcdops.DiskLatency(ctx, hc, m.Endpoint)
			}
		}
	}
	out := make([]disk, len(members))
	for i, m := range members {
		d := disk{Member: m.String(), Endpoint: m.Endpoint}
		if errs[i] != nil {
			d.Judgement = fmt.Sprintf("could not read its metrics: %v", errs[i])
			out[i] = d
			continue
		}
		l := last[i]
		var prefix string
		if r.SampleWindow > 0 {
			now, err := last[i].Since(first[i])
			if err != nil {
				prefix = fmt.Sprintf("no p99 of the last %s (%v); ", r.SampleWindow, err)
			} else if verdict, say := now.Judge(); verdict == etcdops.DiskTooFewSamples {
				prefix = say + "; "
			} else {
				l = now
			}
		}
		verdict, say := l.Judge()
		d.Verdict, d.WALFsync, d.Commit, d.Judgement = verdict, l.WALFsyncP99(), l.BackendCommitP99(), prefix+say
		out[i] = d
	}
	return out, nil
}

// quote picks the alerts' lines that show the symptoms, and the slowest request among them.
func quote(alerts []remediator.Alert) ([]string, time.Duration) {
	var (
		out     []string
		more    int
		slowest time.Duration
		seen    = map[string]bool{}
	)
	for _, a := range alerts {
		if a.Context {
			continue // a tenant's event or a bare probe failure: it proves nothing of etcd
		}
		for _, m := range []map[string]string{a.Labels, a.Annotations} {
			for _, k := range slices.Sorted(maps.Keys(m)) {
				for line := range strings.Lines(m[k]) {
					line = strings.TrimSpace(line)
					if seen[line] || !slices.ContainsFunc(symptoms, func(s string) bool { return strings.Contains(line, s) }) {
						continue
					}
					seen[line] = true
					if sub := tookTooLong.FindStringSubmatch(line); sub != nil {
						if d, err := time.ParseDuration(sub[1]); err == nil {
							slowest = max(slowest, d)
						}
					}
					if len(out) == maxQuotes {
						more++
						continue
					}
					if len(line) > 300 {
						line = strings.ToValidUTF8(line[:300], "") + "..."
					}
					out = append(out, a.Name()+": "+line)
				}
			}
		}
	}
	if more > 0 {
		out = append(out, fmt.Sprintf("(and %d more such lines)", more))
	}
	return out, slowest
}

// diskSummary is the measured p99s in a sentence.
func (e evidence) diskSummary() string {
	var parts []string
	for _, d := range e.Disks {
		if d.Verdict == "" {
			parts = append(parts, d.Member+": no metrics")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: WAL fsync p99 %s, backend commit p99 %s (%s)", d.Member, etcdops.RoundLatency(d.WALFsync), etcdops.RoundLatency(d.Commit), d.Verdict))
	}
	if len(parts) == 0 {
		return "etcd's disk latency was not measured."
	}
	return "etcd's disks measured " + strings.Join(parts, "; ") + "."
}

// rootCause says what the evidence shows caused the failed checks, and what fixes it for good.
func (e evidence) rootCause() string {
	cause, followUp := e.findings()
	return cause + " Follow-up: " + followUp
}

// findings are the root cause as far as the measurements show it, and what is left to humans.
func (e evidence) findings() (cause, followUp string) {
	var slow, fast []string
	for _, d := range e.Disks {
		switch d.Verdict {
		case etcdops.DiskSlow:
			slow = append(slow, d.Member)
		case etcdops.DiskFast:
			fast = append(fast, d.Member)
		}
	}
	var logged string
	if e.SlowestRequest > 0 {
		logged = fmt.Sprintf(" etcd logged requests that took up to %s; kube-apiserver gives its checks %s by default.", e.SlowestRequest, defaultTimeout)
	}
	switch {
	case len(slow) > 0:
		return fmt.Sprintf("Root cause: etcd's disk is too slow on %s (etcd's guidance: WAL fsync p99 under %s, backend commit p99 under %s). %s "+
				"Every etcd write waits for its fsync, kube-apiserver's etcd check waits behind them and times out (`[-]etcd failed`), and the kubelet restarts kube-apiserver.%s "+
				"A longer timeout only buys time.",
				strings.Join(slow, ", "), etcdops.WALFsyncLimit, etcdops.BackendCommitLimit, e.diskSummary(), logged),
			fmt.Sprintf("move etcd's data dir to an SSD on %s (etcd's hardware guidance), then lower --etcd-healthcheck-timeout back to its default", strings.Join(slow, ", "))
	case len(fast) == len(e.Disks) && len(fast) > 0:
		return fmt.Sprintf("Root cause not in the disk as measured: %s That is within etcd's guidance (WAL fsync p99 under %s, backend commit p99 under %s), "+
				"so etcd was slow to answer kube-apiserver's check for another reason now, such as CPU or network starvation or large range requests, or the disk is slow only at times.%s",
				e.diskSummary(), etcdops.WALFsyncLimit, etcdops.BackendCommitLimit, logged),
			"etcd's guidance is an SSD for its data dir; if etcd's data dir is on a spinning disk (the seed's root cause), move it to an SSD"
	}
	return fmt.Sprintf("Root cause not established: not every member's disk could be judged. %s%s", e.diskSummary(), logged),
		fmt.Sprintf("read each member's etcd_disk_wal_fsync_duration_seconds and etcd_disk_backend_commit_duration_seconds p99 (under %s and %s); if they are over, move etcd's data dir to an SSD",
			etcdops.WALFsyncLimit, etcdops.BackendCommitLimit)
}
