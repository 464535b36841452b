package membership

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/poll"
	"github.com/remediator/remediator/remediations/etcdops"
)

// target is a member to take out and bring back, as it was before it was taken out: its ID
// changes when it is added again, its name and URLs do not.
type target struct {
	Name       string   `json:"name"`
	ID         string   `json:"id"`
	Endpoint   string   `json:"endpoint"`
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls"`
}

func targetOf(m member) target {
	return target{Name: m.Name, ID: hexID(m.ID), Endpoint: m.Endpoint, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs}
}

func (t target) String() string { return fmt.Sprintf("%s (%s)", t.Name, t.ID) }

// timing are the waits the steps allow.
// Both membership remediations take them as parameters.
type timing struct {
	ProbePrefix    string        `param:"probe_prefix" default:"remediator/probe" doc:"key prefix of the verification write"`
	StartTimeout   time.Duration `param:"start_timeout" default:"2m" min:"1s" doc:"longest a member may take to answer once started"`
	PromoteTimeout time.Duration `param:"promote_timeout" default:"2m" min:"1s" doc:"longest to wait, per attempt, for a learner to catch up"`
	HealthTimeout  time.Duration `param:"health_timeout" default:"30s" min:"1s" doc:"longest to wait for the members to be healthy and in step, and for etcd to take a new member"`
}

// joiner carries out, for one incident, the phases of bringing a member back as a new member:
// stop, move its data aside, add it as a learner, set its flags, start, promote. Each phase
// finds its work done when it is repeated after an interruption.
type joiner struct {
	nodes    Nodes
	cluster  string
	incident string
	timing
}

func (j joiner) act(ctx context.Context, t target, kind remediator.ActionKind, set map[string]string, remove []string) (remediator.NodeResult, error) {
	return j.nodes.Do(ctx, j.cluster, t.Name, remediator.NodeAction{Kind: kind, Component: remediator.ComponentEtcd,
		Incident: j.incident, Set: set, Remove: remove})
}

// checkNode asks the agent of the member's node which member its etcd is, and refuses unless
// it is this one: the steps after it wipe that node's data.
func (j joiner) checkNode(ctx context.Context, t target) (remediator.NodeResult, error) {
	res, err := j.act(ctx, t, remediator.ActionInspect, nil, nil)
	if err != nil {
		return res, err
	}
	if name := res.Flags["name"]; name != t.Name {
		return res, remediator.Errorf(remediator.EPRECONDITION, "node %s runs etcd --name=%s, not member %s: not touching a node that may run another member", res.Node, name, t)
	}
	if peers := splitList(res.Flags["initial-advertise-peer-urls"]); !sameURLs(peers, t.PeerURLs) {
		return res, remediator.Errorf(remediator.EPRECONDITION, "node %s's etcd advertises peer URLs %v, member %s has %v: not touching a node that may run another member",
			res.Node, peers, t, t.PeerURLs)
	}
	return res, nil
}

func (j joiner) stop(ctx context.Context, t target) (string, error) {
	res, err := j.act(ctx, t, remediator.ActionStop, nil, nil)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("node %s: %s", res.Node, res.Output), nil
}

func (j joiner) moveData(ctx context.Context, t target) (remediator.NodeResult, error) {
	return j.act(ctx, t, remediator.ActionMoveData, nil, nil)
}

// addLearner adds the member as a learner with its peer URLs, or finds it added by an
// earlier attempt whose answer was lost. etcd refuses to add while a voting member has not
// been connected for a few seconds ("unhealthy cluster", the seed's error); that is waited out.
func (j joiner) addLearner(ctx context.Context, v *view, t target) (uint64, string, error) {
	start := time.Now()
	var (
		refused, last error
		id            uint64
		out           string
		looked        bool
	)
	err := poll.Looks(ctx, j.HealthTimeout, time.Second, func(ctx context.Context) (bool, error) {
		if looked { // etcd may list it by now
			if err := v.refresh(ctx); err != nil {
				return false, poll.Stop(err)
			}
		}
		looked = true
		if m, ok := v.byPeerURLs(t.PeerURLs); ok {
			if hexID(m.ID) == t.ID {
				return false, poll.Stop(remediator.Errorf(remediator.EPRECONDITION, "member %s is still in the cluster with the peer URLs %v: it was not removed", t, t.PeerURLs))
			}
			role := "a learner"
			if !m.Learner {
				role = "a voting member"
			}
			id, out = m.ID, fmt.Sprintf("%s was already added back as %x, %s", t.Name, m.ID, role)
			return true, nil
		}
		actx, cancel := context.WithTimeout(ctx, changeTimeout)
		resp, err := v.cluster.MemberAddAsLearner(actx, t.PeerURLs)
		cancel()
		if err == nil {
			id, out = resp.Member.ID, fmt.Sprintf("added %s back as learner %x with peer URLs %s", t.Name, resp.Member.ID, strings.Join(t.PeerURLs, ","))
			if refused != nil {
				out += fmt.Sprintf(", after %s of etcd refusing (%v) until every voting member had been connected long enough",
					time.Since(start).Round(100*time.Millisecond), refused)
			}
			return true, nil
		}
		last = err
		switch e := rpctypes.Error(err); {
		case errors.Is(e, rpctypes.ErrTooManyLearners):
			return false, poll.Stop(remediator.Errorf(remediator.EPRECONDITION, "etcd takes one learner at a time, and the cluster has one: promote or remove it first (%v)", err))
		case errors.Is(e, rpctypes.ErrUnhealthy):
			// Not every voting member has been connected long enough yet.
			refused = err
		case errors.Is(e, rpctypes.ErrPeerURLExist):
			// An earlier attempt added it after all, which the next list shows.
		default:
			return false, poll.Stop(etcdops.Classify(err, "add %s as a learner", t.Name))
		}
		return false, nil
	})
	switch {
	case err == nil:
		return id, out, nil
	case ctx.Err() != nil:
		return 0, "", etcdops.Classify(ctx.Err(), "add %s as a learner", t.Name)
	case errors.Is(err, poll.ErrTimeout):
		return 0, "", remediator.Errorf(remediator.EUNAVAILABLE, "add %s as a learner: etcd still refuses after %s: %w", t.Name, j.HealthTimeout, last)
	}
	return 0, "", err
}

// initialCluster is --initial-cluster for the member joining as id: every member as etcd
// lists it, the joining one under its name, which etcd learns only once it starts. A joining
// member checks that this list is the cluster's.
func initialCluster(members []member, t target, id uint64) (string, error) {
	var parts []string
	found := false
	for _, m := range members {
		name := m.Name
		switch {
		case m.ID == id:
			name, found = t.Name, true
		case !m.Started:
			return "", remediator.Errorf(remediator.EPRECONDITION, "member %x was added but never started, so its name is unknown: finish or remove it before %s joins", m.ID, t.Name)
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, name+"="+u)
		}
	}
	if !found {
		return "", remediator.Errorf(remediator.EPRECONDITION, "member %x, added for %s, is no longer in the cluster", id, t.Name)
	}
	return strings.Join(parts, ","), nil
}

// setFlags writes the flags of a member joining an existing cluster into its manifest; a
// joining member must never force a new cluster.
func (j joiner) setFlags(ctx context.Context, v *view, t target, id uint64) (string, error) {
	initial, err := initialCluster(v.members, t, id)
	if err != nil {
		return "", err
	}
	res, err := j.act(ctx, t, remediator.ActionSetFlags,
		map[string]string{"initial-cluster": initial, "initial-cluster-state": "existing"}, []string{"force-new-cluster"})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("node %s: %s", res.Node, res.Output), nil
}

// start starts the member's etcd and waits until it answers as the new member.
func (j joiner) start(ctx context.Context, v *view, t target, id uint64) (string, error) {
	res, err := j.act(ctx, t, remediator.ActionStart, nil, nil)
	if err != nil {
		return "", err
	}
	out := fmt.Sprintf("node %s: %s", res.Node, res.Output)
	took, err := waitAnswers(ctx, v.cl, t, id, false, j.StartTimeout)
	if err != nil {
		return out, err
	}
	return out + fmt.Sprintf("\n%s answers as %x after %s", t.Endpoint, id, took.Round(100*time.Millisecond)), nil
}

// waitAnswers waits until the member at t's endpoint answers as id, and with itself as leader
// if asked: a member that restarted is no proof of anything until then.
func waitAnswers(ctx context.Context, cl *clientv3.Client, t target, id uint64, leader bool, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	mt := fastStatus{cl: cl}
	var last error
	err := poll.Looks(ctx, timeout, 250*time.Millisecond, func(ctx context.Context) (bool, error) {
		st, err := mt.Status(ctx, t.Endpoint)
		switch {
		case err != nil:
		case st.Header.MemberId != id:
			err = fmt.Errorf("it answers as %x", st.Header.MemberId)
		case leader && st.Leader != id:
			err = fmt.Errorf("its leader is %x, not itself", st.Leader)
		}
		last = err
		return err == nil, nil
	})
	if errors.Is(err, poll.ErrTimeout) {
		return time.Since(start), remediator.Errorf(remediator.EUNAVAILABLE, "member %s does not answer at %s as %x %s after it was started (%v): see its log on its node",
			t.Name, t.Endpoint, id, timeout, last)
	}
	if err != nil {
		return time.Since(start), etcdops.Classify(err, "wait for %s", t.Name)
	}
	return time.Since(start), nil
}

// promote promotes the learner to a voting member once the leader finds it in sync; until
// then etcd refuses, and promote asks again for up to promoteTimeout.
func (j joiner) promote(ctx context.Context, v *view, t target, id uint64) (string, error) {
	start := time.Now()
	var out string
	var last error
	err := poll.Looks(ctx, j.PromoteTimeout, 500*time.Millisecond, func(ctx context.Context) (bool, error) {
		pctx, cancel := context.WithTimeout(ctx, changeTimeout)
		_, err := v.cluster.MemberPromote(pctx, id)
		cancel()
		e := rpctypes.Error(err)
		switch {
		case err == nil:
			out = fmt.Sprintf("promoted %s (%x) to a voting member after %s", t.Name, id, time.Since(start).Round(100*time.Millisecond))
		case errors.Is(e, rpctypes.ErrMemberNotLearner):
			out = fmt.Sprintf("%s (%x) is already a voting member", t.Name, id)
		case errors.Is(e, rpctypes.ErrMemberNotFound):
			return false, poll.Stop(remediator.Errorf(remediator.EPRECONDITION, "learner %x, added for %s, is no longer in the cluster", id, t.Name))
		case errors.Is(e, rpctypes.ErrMemberLearnerNotReady):
			last = err
			return false, nil
		default:
			return false, poll.Stop(etcdops.Classify(err, "promote %s (%x)", t.Name, id))
		}
		return true, nil
	})
	switch {
	case ctx.Err() != nil:
		return "", etcdops.Classify(ctx.Err(), "promote %s", t.Name)
	case errors.Is(err, poll.ErrTimeout):
		return "", remediator.Errorf(remediator.EUNAVAILABLE, "learner %s (%x) is still not in sync with the leader after %s: %w", t.Name, id, j.PromoteTimeout, last)
	}
	return out, err
}
