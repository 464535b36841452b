package etcdops

import (
	"context"
	"net/http"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
)

// Getter gives the etcd client of a cluster, and an HTTP client for its members' metrics.
type Getter interface {
	Get(cluster string) (*clientv3.Client, error)
	HTTPClient(cluster string) (*http.Client, error)
}

// View is a cluster as a step finds it: its client, its members paired with the endpoints
// they are reached at, notes where the configuration and the membership disagree, and, when
// asked for, every member's status.
type View struct {
	Client   *clientv3.Client
	Members  []Member
	Notes    []string
	Statuses []remediator.MemberStatus
	// Metrics reads the members' metrics, for what Status does not tell.
	Metrics HTTPDoer
}

// Look connects to a cluster, lists its members and, with status, asks each for its status.
// Every step looks afresh: the cluster may have changed since the last step, and an approval
// may have kept it waiting for hours.
func Look(ctx context.Context, clients Getter, cluster string, status bool) (v View, err error) {
	if v.Client, err = clients.Get(cluster); err != nil {
		return v, err
	}
	hc, err := clients.HTTPClient(cluster)
	if err != nil {
		return v, err
	}
	v.Metrics = hc
	if v.Members, v.Notes, err = Members(ctx, v.Client, v.Client.Endpoints()); err != nil || !status {
		return v, err
	}
	v.Statuses, err = v.Status(ctx)
	return v, err
}

// Status asks the members for their status again (see Status).
func (v View) Status(ctx context.Context) ([]remediator.MemberStatus, error) {
	return Status(ctx, v.Client, v.Members, v.Metrics)
}
