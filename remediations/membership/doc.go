// Package membership holds the remediations that change an etcd cluster's membership:
// etcd-member-replace (seed 001), for one member whose data is gone or corrupt while the others
// keep a quorum, and etcd-quorum-restore (seed 003), for a cluster that lost its quorum for
// good. Both bring members back the same way, the way etcd's own runbook does it: the member's
// etcd is stopped and its data dir moved aside by the agent of its node, the member is added as
// a learner (which does not vote, so a member that never catches up cannot cost the quorum),
// started with the cluster's --initial-cluster and --initial-cluster-state=existing, and
// promoted once it is in sync with the leader.
//
// Every membership call of a step goes to one member that answered a linearizable member list,
// never through the client's balancer: a learner refuses nearly every call, and a member being
// replaced may be the one the balancer picks.
package membership
