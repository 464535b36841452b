package etcdops

import (
	"context"
	"fmt"
	"slices"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
)

// DisarmOptions say whose NOSPACE alarm to disarm.
type DisarmOptions struct {
	// Below is the share of its quota a member's backend must be under: one over it would
	// alarm again at the next write.
	Below float64
	// Quota stands in for the quota of a member whose status carries none (Status could read
	// it neither from the member's status nor from its metrics); zero leaves it armed.
	Quota int64
	// Only picks the members to disarm; nil picks every member, and the alarms of former
	// members too.
	Only func(remediator.MemberStatus) bool
}

// Disarmed is what DisarmNOSPACE did, and what it left armed and why.
type Disarmed struct {
	Done []string
	// Left are alarms that were not for it to disarm (Only did not pick their member).
	Left []string
	// Refused are alarms it would not disarm: the backend is too close to the quota, or the
	// quota is unknown.
	Refused []string
}

// Lines are what it did and left, for a step's output.
func (d Disarmed) Lines() []string { return slices.Concat(d.Done, d.Left) }

// DisarmNOSPACE disarms the NOSPACE alarms of the members statuses describe (as Status read
// them) whose backend is under opts.Below of their quota.
func DisarmNOSPACE(ctx context.Context, mt clientv3.Maintenance, statuses []remediator.MemberStatus, opts DisarmOptions) (Disarmed, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	alarms, err := mt.AlarmList(ctx)
	if err != nil {
		return Disarmed{}, Classify(err, "alarm list")
	}
	var d Disarmed
	for _, a := range alarms.Alarms {
		if a.Alarm != pb.AlarmType_NOSPACE {
			continue
		}
		id := fmt.Sprintf("%x", a.MemberID)
		i := slices.IndexFunc(statuses, func(s remediator.MemberStatus) bool { return s.ID == id })
		what := id + ", which is no longer a member"
		switch {
		case i < 0 && opts.Only != nil:
			d.Left = append(d.Left, fmt.Sprintf("%s has a NOSPACE alarm too: left as it is", what))
			continue
		case i >= 0:
			s := statuses[i]
			what = fmt.Sprintf("member %s (%s)", s.Name, id)
			if opts.Only != nil && !opts.Only(s) {
				d.Left = append(d.Left, fmt.Sprintf("%s has a NOSPACE alarm too: left for etcd-nospace-recovery", what))
				continue
			}
			quota := s.Quota
			if quota == 0 {
				quota = opts.Quota
			}
			if quota == 0 {
				d.Refused = append(d.Refused, fmt.Sprintf("%s: quota unknown (etcd %s tells it neither in its status nor at /metrics): set params.quota_bytes to its --quota-backend-bytes", what, s.Version))
				continue
			}
			ratio := float64(s.DBSize) / float64(quota)
			if ratio >= opts.Below {
				d.Refused = append(d.Refused, fmt.Sprintf("%s db is %s of its %s quota (%.0f%%, limit %.0f%%)",
					what, remediator.HumanBytes(s.DBSize), remediator.HumanBytes(quota), ratio*100, opts.Below*100))
				continue
			}
			what += fmt.Sprintf(": db %s of %s quota", remediator.HumanBytes(s.DBSize), remediator.HumanBytes(quota))
		}
		if _, err := mt.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: a.Alarm}); err != nil {
			return d, Classify(err, "disarm NOSPACE of %s", id)
		}
		d.Done = append(d.Done, "disarmed NOSPACE of "+what)
	}
	return d, nil
}

// RefusedError is the error of a disarm that left alarms armed, or nil: disarming a member whose
// live data fills its quota would only re-alarm it.
func (d Disarmed) RefusedError() error {
	if len(d.Refused) == 0 {
		return nil
	}
	return remediator.Errorf(remediator.EPRECONDITION,
		"left NOSPACE armed: %s. Where the live data needs more room, raise --quota-backend-bytes or delete data; disarming now would only re-alarm",
		strings.Join(d.Refused, "; "))
}

// NoAlarms fails, EPRECONDITION, while any member's status (from Status) carries an alarm: a
// recovery is not verified while etcd still refuses writes or reports corruption.
func NoAlarms(statuses []remediator.MemberStatus) error {
	var armed []string
	for _, s := range statuses {
		for _, a := range s.Alarms {
			armed = append(armed, fmt.Sprintf("%s on member %s", a, s.Name))
		}
	}
	if len(armed) > 0 {
		return remediator.Errorf(remediator.EPRECONDITION, "alarms are still armed: %s", strings.Join(armed, ", "))
	}
	return nil
}
