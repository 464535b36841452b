package etcdops

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
)

// callTimeout bounds one quick etcd call (status, alarm list, member list).
const callTimeout = 5 * time.Second

// Member is one member of a cluster and the endpoint remediator reaches it at.
type Member struct {
	ID       uint64
	Name     string
	Endpoint string
	Learner  bool
}

// String names the member the way etcdctl shows it: name and hex ID.
func (m Member) String() string { return fmt.Sprintf("%s (%x)", m.Name, m.ID) }

// Members lists the cluster's members and pairs each with the configured endpoint that is one
// of its client URLs, or else with the first client URL it advertises. The notes say where the
// configuration and the membership disagree.
func Members(ctx context.Context, cl clientv3.Cluster, configured []string) ([]Member, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := cl.MemberList(ctx)
	if err != nil {
		return nil, nil, Classify(err, "member list from %s", strings.Join(configured, ", "))
	}
	var (
		members []Member
		notes   []string
		used    = map[string]bool{}
	)
	for _, m := range resp.Members {
		member := Member{ID: m.ID, Name: m.Name, Learner: m.IsLearner}
		if member.Name == "" {
			member.Name = "(unstarted)"
		}
		for _, u := range m.ClientURLs {
			for _, e := range configured {
				if hostPort(e) == hostPort(u) {
					member.Endpoint = e
					used[e] = true
				}
			}
		}
		if member.Endpoint == "" && len(m.ClientURLs) > 0 {
			member.Endpoint = m.ClientURLs[0]
			notes = append(notes, fmt.Sprintf("member %s is not among the configured endpoints; reaching it at its advertised %s", member, member.Endpoint))
		}
		members = append(members, member)
	}
	var strangers []string
	for _, e := range configured {
		if !used[e] {
			strangers = append(strangers, e)
		}
	}
	// Endpoints that are all no member's URL are a load balancer or DNS name in front of the
	// cluster; some that are and some that are not may be another cluster, or a removed
	// member, in the configuration: acting then could act on the wrong cluster.
	if len(strangers) > 0 && len(used) > 0 {
		return members, notes, remediator.Errorf(remediator.EPRECONDITION,
			"configured endpoints %s are not client URLs of this cluster's members (%s): fix the cluster's etcd.endpoints",
			strings.Join(strangers, ", "), describeMembers(members))
	}
	for _, e := range strangers {
		notes = append(notes, fmt.Sprintf("configured endpoint %s is a front for the cluster, not a member's client URL", e))
	}
	slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return members, notes, nil
}

func describeMembers(members []Member) string {
	parts := make([]string, len(members))
	for i, m := range members {
		parts[i] = m.String() + " at " + m.Endpoint
	}
	return strings.Join(parts, ", ")
}

func hostPort(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		return u.Host
	}
	return endpoint
}

// Status asks every member for its status, and the cluster for its alarms. A member that does
// not answer, or answers as another member, has its Error set; the error returned is for the
// alarm list, which any member can answer. A member that does not report its quota (etcd
// before 3.6) is asked for it through metrics, its /metrics endpoint; with nil, or where that
// fails too, its Quota stays 0: unknown.
func Status(ctx context.Context, mt clientv3.Maintenance, members []Member, metrics HTTPDoer) ([]remediator.MemberStatus, error) {
	out := make([]remediator.MemberStatus, len(members))
	for i, m := range members {
		out[i] = memberStatus(ctx, mt, m)
		if out[i].Quota == 0 && out[i].Error == "" && metrics != nil {
			// An unknown quota is said where it matters; the scrape's error adds nothing there.
			out[i].Quota, _ = QuotaBytes(ctx, metrics, m.Endpoint)
		}
	}
	actx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	alarms, err := mt.AlarmList(actx)
	if err != nil {
		return out, Classify(err, "alarm list")
	}
	for _, a := range alarms.Alarms {
		for i, m := range members {
			if m.ID == a.MemberID {
				out[i].Alarms = append(out[i].Alarms, a.Alarm.String())
			}
		}
	}
	return out, nil
}

func memberStatus(ctx context.Context, mt clientv3.Maintenance, m Member) remediator.MemberStatus {
	st := remediator.MemberStatus{ID: fmt.Sprintf("%x", m.ID), Name: m.Name, Endpoint: m.Endpoint, Learner: m.Learner}
	if m.Endpoint == "" {
		st.Error = "it advertises no client URL (not started?)"
		return st
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := mt.Status(ctx, m.Endpoint)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	if resp.Header.MemberId != m.ID {
		st.Error = fmt.Sprintf("endpoint %s answers as member %x", m.Endpoint, resp.Header.MemberId)
		return st
	}
	st.ClusterID = fmt.Sprintf("%x", resp.Header.ClusterId)
	st.Version = resp.Version
	st.Leader = resp.Leader != 0 && resp.Leader == resp.Header.MemberId
	st.DBSize = resp.DbSize
	st.DBSizeInUse = resp.DbSizeInUse
	st.Quota = resp.DbSizeQuota
	st.Revision = resp.Header.Revision
	st.RaftIndex = resp.RaftIndex
	st.RaftTerm = resp.RaftTerm
	// resp.Errors repeats the alarms, which the alarm list gives per member; a member is only
	// unhealthy here if it does not answer or has no leader.
	if resp.Leader == 0 {
		st.Error = "it has no leader"
	}
	return st
}

// Safe returns an EPRECONDITION error unless it is safe to change the cluster: every member
// answers, with a leader, as a member of the same cluster, and none carries a CORRUPT alarm
// (its data disagrees with the others'; that needs a human, not maintenance).
func Safe(statuses []remediator.MemberStatus) error {
	var bad []string
	for _, s := range statuses {
		switch {
		case s.Error != "":
			bad = append(bad, fmt.Sprintf("member %s (%s) at %s: %s", s.Name, s.ID, s.Endpoint, s.Error))
		case s.ClusterID != statuses[0].ClusterID:
			bad = append(bad, fmt.Sprintf("member %s (%s) belongs to cluster %s, member %s to %s", s.Name, s.ID, s.ClusterID, statuses[0].Name, statuses[0].ClusterID))
		case slices.Contains(s.Alarms, pb.AlarmType_CORRUPT.String()):
			bad = append(bad, fmt.Sprintf("member %s (%s) has a CORRUPT alarm: its data disagrees with the others' (see etcd-member-replace)", s.Name, s.ID))
		}
	}
	if len(bad) > 0 {
		return remediator.Errorf(remediator.EPRECONDITION, "%s", strings.Join(bad, "; "))
	}
	return nil
}

// Describe writes one line per member, as the report and step outputs show them.
func Describe(statuses []remediator.MemberStatus) string {
	var b strings.Builder
	for _, s := range statuses {
		role := "follower"
		switch {
		case s.Leader:
			role = "leader"
		case s.Learner:
			role = "learner"
		}
		if s.Error != "" {
			fmt.Fprintf(&b, "%s (%s) at %s: unreachable or unhealthy: %s\n", s.Name, s.ID, s.Endpoint, s.Error)
			continue
		}
		alarms := "none"
		if len(s.Alarms) > 0 {
			alarms = strings.Join(s.Alarms, ",")
		}
		fmt.Fprintf(&b, "%s (%s) %s: db %s (in use %s), %s, revision %d, raft index %d, alarms %s\n",
			s.Name, s.ID, role, remediator.HumanBytes(s.DBSize), remediator.HumanBytes(s.DBSizeInUse),
			s.QuotaText(), s.Revision, s.RaftIndex, alarms)
	}
	return b.String()
}
