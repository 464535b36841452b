// Package defrag is the etcd-defrag-fragmented remediation, prevention for seed 004. etcd's
// backend keeps the pages that compaction frees inside its file, so a member's database stays
// as large on disk as it ever was, and the space quota is checked against that size:
// fragmentation left alone becomes NOSPACE. Defragmenting gives the space back but blocks the
// member while it runs, so this does it only when every member is healthy, only on the members
// that need it, and one at a time with the leader last.
package defrag

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/params"
)

// Name is the remediation's name in policies.
const Name = "etcd-defrag-fragmented"

// Remediation is etcd-defrag-fragmented.
type Remediation struct {
	clients etcdops.Getter
}

// New returns the remediation.
func New(clients etcdops.Getter) *Remediation {
	return &Remediation{clients: clients}
}

// Params are the remediation's parameters. A member is defragmented when both of the first
// two hold; the defaults are those of etcd's own etcdDatabaseHighFragmentationRatio alert
// (under half in use, over 100 MiB in use), so that a member the alert fires for is one this
// defragments.
type Params struct {
	MinRatio   float64      `param:"min_fragmentation_ratio" default:"0.5" range:"(0,1]" doc:"share of the db file that is free (1 - in use / db size) from which a member is defragmented"`
	MinReclaim params.Bytes `param:"min_reclaim_bytes" default:"104857600" doc:"bytes defragmentation must give back (db size - in use); blocking a member for less is not worth it"`
	etcdops.DefragParams
}

// Params lists the remediation's parameters.
func (r *Remediation) Params() []params.Field { return params.Fields(&Params{}) }

// The steps, by name.
const (
	StepPreflight  = "preflight"
	StepDefragment = "defragment"
	StepVerify     = "verify"
)

// Plan returns the steps for the given parameters (Params). A member rewrites its whole
// database into a new file while it defragments, so it needs free disk space for the data in
// use; remediator cannot see the members' disks.
func (r *Remediation) Plan(p map[string]string) ([]remediator.PlannedStep, error) {
	return params.Plan(p, r.steps)
}

func (r *Remediation) steps(s Params) ([]remediator.PlannedStep, error) {
	run := &run{Remediation: r, Params: s}
	return []remediator.PlannedStep{
		{Name: StepPreflight, Risk: remediator.RiskReadOnly, Run: run.preflight,
			Description: fmt.Sprintf("status of every member; stop if one is unreachable or CORRUPT, and find nothing to do unless one is at least %.0f%% fragmented with %s to give back",
				s.MinRatio*100, remediator.HumanBytes(int64(s.MinReclaim)))},
		{Name: StepDefragment, Risk: remediator.RiskHigh, Run: run.defragment,
			Description: "defragment the fragmented members one at a time, followers first and the leader last, each healthy before the next",
			Undo:        "nothing to undo: defragmentation changes no key, it only blocks each member while it runs"},
		{Name: StepVerify, Risk: remediator.RiskReadOnly, Run: run.verify,
			Description: "every member is healthy and none is fragmented any more"},
	}, nil
}

type run struct {
	*Remediation
	Params
}

// fragmentation is the share of the member's db file that holds no data.
func fragmentation(s remediator.MemberStatus) float64 {
	return 1 - float64(s.DBSizeInUse)/float64(s.DBSize)
}

// assessment is what a step says of one member's fragmentation.
type assessment struct {
	member  string // name (ID)
	worth   bool   // worth defragmenting
	figures string // how fragmented it is
	verdict string // and so what is done with it
}

func (a assessment) String() string { return a.member + ": " + a.figures + ": " + a.verdict }

// assess says whether the member is worth defragmenting, and why or why not.
func (s Params) assess(st remediator.MemberStatus) assessment {
	a := assessment{member: fmt.Sprintf("%s (%s)", st.Name, st.ID)}
	switch {
	case st.Error != "":
		a.figures, a.verdict = "no status", st.Error
		return a
	case st.DBSize <= 0 || st.DBSizeInUse <= 0:
		// etcd before 3.4 does not report its space in use: every member would look empty.
		a.figures, a.verdict = fmt.Sprintf("does not report its space in use (etcd %s)", st.Version), "left alone"
		return a
	}
	frag, free := fragmentation(st), st.DBSize-st.DBSizeInUse
	a.figures = fmt.Sprintf("%.0f%% fragmented, %s of its %s db free", frag*100, remediator.HumanBytes(free), remediator.HumanBytes(st.DBSize))
	switch {
	case frag < s.MinRatio:
		a.verdict = fmt.Sprintf("under %.0f%%, left alone", s.MinRatio*100)
	case free < int64(s.MinReclaim):
		a.verdict = fmt.Sprintf("under %s free, not worth blocking it, left alone", remediator.HumanBytes(int64(s.MinReclaim)))
	default:
		a.worth, a.verdict = true, "to defragment"
	}
	return a
}

// assessAll assesses every member, in the statuses' order.
func (s Params) assessAll(statuses []remediator.MemberStatus) (all []assessment, worth int) {
	for _, st := range statuses {
		a := s.assess(st)
		all = append(all, a)
		if a.worth {
			worth++
		}
	}
	return all, worth
}

func lines(as []assessment) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func (r *run) preflight(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	v, err := etcdops.Look(ctx, r.clients, in.Incident.Cluster, true)
	if err != nil {
		return remediator.StepResult{}, err
	}
	assessed, worth := r.assessAll(v.Statuses)
	out := slices.Concat(v.Notes, []string{strings.TrimSuffix(etcdops.Describe(v.Statuses), "\n")}, lines(assessed))
	res := remediator.StepResult{Output: strings.Join(out, "\n"), Before: v.Statuses}
	if err := etcdops.Safe(v.Statuses); err != nil {
		return res, remediator.Errorf(remediator.EPRECONDITION, "refusing to defragment: %w", err)
	}
	if worth == 0 {
		return res, remediator.NothingToDof(
			"no member is at least %.0f%% fragmented with %s free (if the alert still fires, its threshold and params.min_fragmentation_ratio or params.min_reclaim_bytes disagree)",
			r.MinRatio*100, remediator.HumanBytes(int64(r.MinReclaim)))
	}
	return res, nil
}

func (r *run) defragment(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	v, err := etcdops.Look(ctx, r.clients, in.Incident.Cluster, true)
	if err != nil {
		return remediator.StepResult{}, err
	}
	if err := etcdops.Safe(v.Statuses); err != nil {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "not defragmenting: %w", err)
	}
	assessed, _ := r.assessAll(v.Statuses)
	worth := map[string]bool{}
	for i, st := range v.Statuses {
		worth[st.ID] = assessed[i].worth
	}
	done, earlier, err := etcdops.Defragment(ctx, in, v.Client, v.Members, etcdops.DefragOptions{
		DefragParams: r.DefragParams,
		Only:         func(st remediator.MemberStatus) bool { return worth[st.ID] },
	})
	var b strings.Builder
	if len(done) == 0 && err == nil {
		fmt.Fprintln(&b, "no member needs defragmenting now")
	}
	for _, d := range done {
		by := ""
		if slices.ContainsFunc(earlier, byID(d.ID)) {
			by = " (by an earlier attempt)"
		}
		fmt.Fprintf(&b, "%s%s\n", d, by)
	}
	for i, st := range v.Statuses {
		if !worth[st.ID] && !slices.ContainsFunc(done, byID(st.ID)) {
			fmt.Fprintln(&b, assessed[i])
		}
	}
	return remediator.StepResult{Output: b.String()}, err
}

func byID(id string) func(etcdops.Defragmented) bool {
	return func(d etcdops.Defragmented) bool { return d.ID == id }
}

func (r *run) verify(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	v, err := etcdops.Look(ctx, r.clients, in.Incident.Cluster, true)
	if err != nil {
		return remediator.StepResult{}, err
	}
	assessed, _ := r.assessAll(v.Statuses)
	var out, still []string
	for i, a := range assessed {
		line := a.member + ": " + a.figures
		if j := slices.IndexFunc(in.Incident.Before, func(b remediator.MemberStatus) bool { return b.ID == v.Statuses[i].ID }); j >= 0 {
			if before := in.Incident.Before[j]; before.Error == "" && before.DBSize > 0 {
				line += fmt.Sprintf(" (before: %.0f%% fragmented, %s db)", fragmentation(before)*100, remediator.HumanBytes(before.DBSize))
			}
		}
		out = append(out, line)
		if a.worth {
			still = append(still, a.member)
		}
	}
	out = slices.Concat(v.Notes, []string{strings.TrimSuffix(etcdops.Describe(v.Statuses), "\n")}, out)
	res := remediator.StepResult{Output: strings.Join(out, "\n"), After: v.Statuses}
	if err := etcdops.Safe(v.Statuses); err != nil {
		return res, remediator.Errorf(remediator.EPRECONDITION, "after defragmentation: %w", err)
	}
	if len(still) > 0 {
		return res, remediator.Errorf(remediator.EPRECONDITION,
			"still fragmented after defragmentation: %s (is something deleting faster than defragmentation gives the space back?)",
			strings.Join(still, ", "))
	}
	return res, nil
}
