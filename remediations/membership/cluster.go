package membership

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/poll"
	"github.com/remediator/remediator/remediations/etcdops"
)

// Nodes sends a node-local action to the agent of the node an etcd member runs on.
type Nodes interface {
	Do(ctx context.Context, cluster, member string, act remediator.NodeAction) (remediator.NodeResult, error)
}

// callTimeout bounds one quick etcd call; a membership change waits for the change to be
// applied, so it gets longer.
const (
	callTimeout   = 5 * time.Second
	changeTimeout = 15 * time.Second
)

// member is a member as the member list gives it, with the endpoint remediator reaches it at.
type member struct {
	etcdops.Member
	// Started says whether it has published its name: a member added but never started has
	// none, and no client URL.
	Started    bool
	PeerURLs   []string
	ClientURLs []string
}

// view is the cluster as a step finds it: its members, listed through one member (via), and
// the calls that then go to that member only.
type view struct {
	cl      *clientv3.Client
	conn    *grpc.ClientConn
	via     string
	cluster clientv3.Cluster
	kv      clientv3.KV
	members []member
	notes   []string
	opts    lookOptions
}

// lookOptions say how to list the members.
type lookOptions struct {
	// serializable lists what the answering member knows, without a leader: the only list
	// there is once the quorum is lost.
	serializable bool
	// avoid are endpoints not to list through: the member being replaced.
	avoid []string
	// absent are client URLs of members that may be missing from the list (removed and not
	// yet added again): configured endpoints among them are not a sign of a wrong cluster.
	absent []string
}

// look lists the members through the first configured endpoint that answers, and keeps a
// connection to that member for the step's calls.
func look(ctx context.Context, cl *clientv3.Client, o lookOptions) (*view, error) {
	var errs []string
	for _, ep := range cl.Endpoints() {
		if matches(ep, o.avoid) {
			continue
		}
		conn, err := cl.Dial(ep)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", ep, err))
			continue
		}
		// Without the client's call options: their wait-for-ready holds a call to a member
		// that is down for as long as the call may take, where this one fails at once.
		cluster := clientv3.NewClusterFromClusterClient(pb.NewClusterClient(conn), nil)
		resp, err := list(ctx, cluster, o.serializable)
		if err != nil {
			conn.Close()
			errs = append(errs, fmt.Sprintf("%s: %v", ep, err))
			continue
		}
		v := &view{cl: cl, conn: conn, via: ep, cluster: cluster, kv: clientv3.NewKVFromKVClient(pb.NewKVClient(conn), nil), opts: o}
		if err := v.pair(ctx, resp); err != nil {
			v.close()
			return nil, err
		}
		return v, nil
	}
	kind := "a linearizable"
	if o.serializable {
		kind = "a serializable"
	}
	return nil, remediator.Errorf(remediator.EUNAVAILABLE, "no member answers %s member list: %s", kind, strings.Join(errs, "; "))
}

// list lists the members. A linearizable list is asked with require-leader, so that a member
// without a leader says so at once instead of waiting for one.
func list(ctx context.Context, c clientv3.Cluster, serializable bool) (*clientv3.MemberListResponse, error) {
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	} else {
		ctx = clientv3.WithRequireLeader(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return c.MemberList(ctx, opts...)
}

// listed answers MemberList with a list already read, so that etcdops.Members pairs it.
type listed struct {
	clientv3.Cluster
	resp *clientv3.MemberListResponse
}

func (l listed) MemberList(context.Context, ...clientv3.OpOption) (*clientv3.MemberListResponse, error) {
	return l.resp, nil
}

// pair pairs the members with the configured endpoints as etcdops.Members does, leaving out
// the endpoints of members expected to be absent that are indeed absent.
func (v *view) pair(ctx context.Context, resp *clientv3.MemberListResponse) error {
	var present []string
	for _, m := range resp.Members {
		present = append(present, m.ClientURLs...)
	}
	var configured []string
	for _, e := range v.cl.Endpoints() {
		if matches(e, v.opts.absent) && !matches(e, present) {
			continue
		}
		configured = append(configured, e)
	}
	members, notes, err := etcdops.Members(ctx, listed{resp: resp}, configured)
	if err != nil {
		return err
	}
	v.members, v.notes = nil, notes
	for _, m := range members {
		i := slices.IndexFunc(resp.Members, func(r *pb.Member) bool { return r.ID == m.ID })
		r := resp.Members[i]
		v.members = append(v.members, member{Member: m, Started: r.Name != "", PeerURLs: r.PeerURLs, ClientURLs: r.ClientURLs})
	}
	return nil
}

// refresh lists the members again, through the same member.
func (v *view) refresh(ctx context.Context) error {
	resp, err := list(ctx, v.cluster, v.opts.serializable)
	if err != nil {
		return etcdops.Classify(err, "member list through %s", v.via)
	}
	return v.pair(ctx, resp)
}

func (v *view) close() {
	if v != nil && v.conn != nil {
		v.conn.Close()
	}
}

// byID finds a member by its hex ID.
func (v *view) byID(id string) (member, bool) {
	i := slices.IndexFunc(v.members, func(m member) bool { return hexID(m.ID) == id })
	if i < 0 {
		return member{}, false
	}
	return v.members[i], true
}

// byPeerURLs finds the member with any of the peer URLs.
func (v *view) byPeerURLs(urls []string) (member, bool) {
	i := slices.IndexFunc(v.members, func(m member) bool {
		return slices.ContainsFunc(m.PeerURLs, func(u string) bool { return matches(u, urls) })
	})
	if i < 0 {
		return member{}, false
	}
	return v.members[i], true
}

func (v *view) plain() []etcdops.Member {
	out := make([]etcdops.Member, len(v.members))
	for i, m := range v.members {
		out[i] = m.Member
	}
	return out
}

// maintenance asks for alarms and snapshots through via, and for each member's status
// directly.
func (v *view) maintenance() fastStatus {
	return fastStatus{Maintenance: clientv3.NewMaintenanceFromMaintenanceClient(pb.NewMaintenanceClient(v.conn), v.cl), cl: v.cl}
}

// statuses asks every member for its status, and via for the alarms. The alarm list needs a
// leader: its error says the alarms are unknown, the statuses are good without it.
func (v *view) statuses(ctx context.Context) ([]remediator.MemberStatus, error) {
	return etcdops.Status(ctx, v.maintenance(), v.plain(), nil)
}

// fastStatus is a clientv3.Maintenance for etcdops.Status that asks each member for its status
// on a connection of its own that fails at once when the member is down, where the client's
// waits for it to come up as long as the call may take; and that asks for the alarm list only
// of a member with a leader, since the list goes through raft and would otherwise wait as long.
type fastStatus struct {
	clientv3.Maintenance
	cl *clientv3.Client
}

func (f fastStatus) Status(ctx context.Context, endpoint string) (*clientv3.StatusResponse, error) {
	conn, err := f.cl.Dial(endpoint)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return clientv3.NewMaintenanceFromMaintenanceClient(pb.NewMaintenanceClient(conn), nil).Status(ctx, endpoint)
}

func (f fastStatus) AlarmList(ctx context.Context) (*clientv3.AlarmResponse, error) {
	return f.Maintenance.AlarmList(clientv3.WithRequireLeader(ctx))
}

// errorIs says whether an etcd call's error is the etcd error target.
func errorIs(err, target error) bool { return errors.Is(rpctypes.Error(err), target) }

// disarmGone disarms the alarms of members that are no longer in the cluster. etcd keeps them
// when it removes a member, and a CORRUPT or NOSPACE alarm stops every write in the cluster,
// whichever member raised it; the members that are left raise their own again if they must.
func disarmGone(ctx context.Context, v *view) ([]string, error) {
	mt := v.maintenance()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := mt.AlarmList(ctx)
	if err != nil {
		return nil, etcdops.Classify(err, "alarm list through %s", v.via)
	}
	var out []string
	for _, a := range resp.Alarms {
		if _, ok := v.byID(hexID(a.MemberID)); ok {
			continue
		}
		if _, err := mt.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: a.Alarm}); err != nil {
			return out, etcdops.Classify(err, "disarm %s of %x", a.Alarm, a.MemberID)
		}
		out = append(out, fmt.Sprintf("disarmed the %s alarm of %x, which is no longer a member", a.Alarm, a.MemberID))
	}
	return out, nil
}

// quorum is how many of n voting members must agree.
func quorum(n int) int { return n/2 + 1 }

func hexID(id uint64) string { return fmt.Sprintf("%x", id) }

func parseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, remediator.Errorf(remediator.EINTERNAL, "member ID %q: %w", s, err)
	}
	return id, nil
}

func corrupt(s remediator.MemberStatus) bool {
	return slices.Contains(s.Alarms, pb.AlarmType_CORRUPT.String())
}

// checkWithout refuses unless the cluster keeps its quorum without the member with the given
// ID: the healthy voting members other than it must be a quorum of the voting members left
// once it is removed, and every other member must be healthy.
func checkWithout(members []member, statuses []remediator.MemberStatus, id, name string) error {
	var others []remediator.MemberStatus
	voters, healthy := 0, 0
	for i, m := range members {
		if hexID(m.ID) == id {
			continue
		}
		others = append(others, statuses[i])
		if m.Learner {
			continue
		}
		voters++
		if statuses[i].Error == "" && !corrupt(statuses[i]) {
			healthy++
		}
	}
	if voters == 0 {
		return remediator.Errorf(remediator.EPRECONDITION, "member %s is the only voting member: there is no cluster to replace it in (restore a snapshot instead)", name)
	}
	if healthy < quorum(voters) {
		return remediator.Errorf(remediator.EPRECONDITION,
			"without member %s the cluster has %d voting members, %d of them healthy, and needs %d for a quorum: taking it out would lose the quorum (if the quorum is lost for good, see etcd-quorum-restore)",
			name, voters, healthy, quorum(voters))
	}
	if err := etcdops.Safe(others); err != nil {
		return remediator.Errorf(remediator.EPRECONDITION, "not taking member %s out while another member is not healthy: %w", name, err)
	}
	return nil
}

// settle waits until every member answers with a leader and their raft indexes are within
// raftIndexSlack of each other, or timeout passes.
func settle(ctx context.Context, v *view, timeout time.Duration) ([]remediator.MemberStatus, error) {
	var statuses []remediator.MemberStatus
	var last error
	err := poll.Looks(ctx, timeout, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		var err error
		statuses, err = v.statuses(ctx)
		if err == nil {
			err = etcdops.Safe(statuses)
		}
		if err == nil {
			lo, hi := statuses[0].RaftIndex, statuses[0].RaftIndex
			for _, s := range statuses {
				lo, hi = min(lo, s.RaftIndex), max(hi, s.RaftIndex)
			}
			if hi-lo <= raftIndexSlack {
				return true, nil
			}
			err = fmt.Errorf("raft indexes range from %d to %d", lo, hi)
		}
		last = err
		return false, nil
	})
	switch {
	case errors.Is(err, poll.ErrTimeout):
		return statuses, remediator.Errorf(remediator.EUNAVAILABLE, "the members did not settle within %s: %w", timeout, last)
	case err != nil:
		return statuses, etcdops.Classify(ctx.Err(), "wait for the members to settle")
	}
	return statuses, nil
}

// raftIndexSlack is how far apart the members' raft indexes may be for them to count as in
// step: a follower learns of the newest commit with the next heartbeat, so an index or two
// behind is not lagging.
const raftIndexSlack = 2

// matches says whether the URL has the host and port of one of urls.
func matches(u string, urls []string) bool {
	return slices.ContainsFunc(urls, func(o string) bool { return hostPort(o) == hostPort(u) })
}

func hostPort(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		return u.Host
	}
	return endpoint
}

// sameURLs says whether two lists hold the same URLs, in any order.
func sameURLs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, u := range a {
		if !matches(u, b) {
			return false
		}
	}
	return true
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
