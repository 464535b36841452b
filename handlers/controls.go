package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/remediator/remediator"
)

// Controls are an operator's hands on the runs: close a finished incident, cancel or retry a
// run, pause and resume a cluster. Each is a change of the store that the workers honour;
// none does a remediation's work.
type Controls interface {
	Close(ctx context.Context, id, by, reason string) (*remediator.Incident, error)
	Cancel(ctx context.Context, id, by, reason string) (*remediator.Incident, error)
	Retry(ctx context.Context, id, by string) (*remediator.Incident, error)
	Pause(ctx context.Context, cluster, by, reason string) (remediator.Pause, error)
	Resume(ctx context.Context, cluster, by string) error
	Paused(ctx context.Context) ([]remediator.Pause, error)
}

// controlBody is the body of an operator's request: who (with the shared token) and why.
type controlBody struct {
	Approver string `json:"approver"`
	Reason   string `json:"reason"`
}

// maxControlBytes bounds an operator request's body.
const maxControlBytes = 64 << 10

// decodeBody reads an operator request's small JSON body into v; shape is what it should look
// like, for the error. A browser that holds an operator's basic-auth password sends it with any
// request to this origin, a form posted by another site's page too: such a request is refused
// for its origin, and a form cannot send JSON (only a script of this page can, or the CLI).
func decodeBody(c echo.Context, v any, shape string) error {
	r := c.Request()
	// A browser says where a request comes from in Sec-Fetch-Site, whatever a proxy in front
	// did to the Host; an older one only in Origin.
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return remediator.Errorf(remediator.EFORBIDDEN, "a request from another site's page (Sec-Fetch-Site: %s) is refused: operators act from remediator's own page or its CLI", site)
	} else if o := r.Header.Get("Origin"); site == "" && o != "" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			return remediator.Errorf(remediator.EFORBIDDEN, "a request from another site's page (Origin %s) is refused: operators act from remediator's own page or its CLI", o)
		}
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return remediator.Errorf(remediator.EINVALID, "send the body as JSON like %s, with Content-Type: application/json", shape)
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, maxControlBytes))
	err := dec.Decode(v)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return remediator.Errorf(remediator.ETOOLARGE, "body is over the %d byte limit", maxControlBytes)
	case err != nil:
		return remediator.Errorf(remediator.EINVALID, "body must be JSON like %s", shape)
	}
	return nil
}

// control reads an operator's request and says who sent it.
func (a *api) control(c echo.Context) (controlBody, string, error) {
	var body controlBody
	if err := decodeBody(c, &body, `{"approver": "name", "reason": "..."}`); err != nil {
		return body, "", err
	}
	by, _, err := a.operator(c, body.Approver)
	return body, by, err
}

// closeIncident closes a finished incident by hand, for an operator: its alerts will never
// resolve (silenced, or sent without send_resolved) and the humans have dealt with it.
func (a *api) closeIncident(c echo.Context) error {
	body, by, err := a.control(c)
	if err != nil {
		return err
	}
	inc, err := a.Controls.Close(c.Request().Context(), c.Param("id"), by, body.Reason)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, inc)
}

func (a *api) cancelIncident(c echo.Context) error {
	body, by, err := a.control(c)
	if err != nil {
		return err
	}
	inc, err := a.Controls.Cancel(c.Request().Context(), c.Param("id"), by, body.Reason)
	if err != nil {
		return err
	}
	a.Log.Info("cancel requested", "incident", inc.ID, "by", by, "reason", body.Reason)
	return c.JSON(http.StatusOK, inc)
}

func (a *api) retryIncident(c echo.Context) error {
	_, by, err := a.control(c)
	if err != nil {
		return err
	}
	inc, err := a.Controls.Retry(c.Request().Context(), c.Param("id"), by)
	if err != nil {
		return err
	}
	a.Log.Info("retry requested", "incident", inc.ID, "by", by, "attempt", inc.Attempt)
	return c.JSON(http.StatusOK, inc)
}

// cluster is the cluster a request names: a configured one, or every one ("*").
func (a *api) cluster(c echo.Context) (string, error) {
	name := c.Param("name")
	if name == remediator.AllClusters || slices.Contains(a.Clusters, name) {
		return name, nil
	}
	return "", remediator.Errorf(remediator.ENOTFOUND, "cluster %q is not configured (clusters: %s; * for all)", name, strings.Join(a.Clusters, ", "))
}

func (a *api) pauseCluster(c echo.Context) error {
	// Who asks comes first: the cluster's names are not for anyone.
	body, by, err := a.control(c)
	if err != nil {
		return err
	}
	cluster, err := a.cluster(c)
	if err != nil {
		return err
	}
	p, err := a.Controls.Pause(c.Request().Context(), cluster, by, body.Reason)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (a *api) resumeCluster(c echo.Context) error {
	_, by, err := a.control(c)
	if err != nil {
		return err
	}
	cluster, err := a.cluster(c)
	if err != nil {
		return err
	}
	if err := a.Controls.Resume(c.Request().Context(), cluster, by); err != nil {
		return err
	}
	return a.listClusters(c)
}

// ClusterStatus is what the API tells of a configured cluster: whether it is paused, and
// whether its etcd answered when last asked.
type ClusterStatus struct {
	Name   string            `json:"name"`
	Paused *remediator.Pause `json:"paused,omitempty"`
	Etcd   *Reachability     `json:"etcd,omitempty"`
}

// Clusters is the answer of GET /api/v1/clusters: every configured cluster, and a pause of
// every cluster if one is in force.
type Clusters struct {
	PausedAll *remediator.Pause `json:"paused_all,omitempty"`
	Clusters  []ClusterStatus   `json:"clusters"`
}

func (a *api) listClusters(c echo.Context) error {
	out, err := a.clusterStatus(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// clusterStatus tells of every configured cluster: its pause, if one is in force, and whether
// its etcd answered when last asked; and of a pause of every cluster. A pause of a cluster no
// longer configured is left out: nothing runs there.
func (a *api) clusterStatus(ctx context.Context) (Clusters, error) {
	pauses, err := a.Controls.Paused(ctx)
	if err != nil {
		return Clusters{}, err
	}
	var out Clusters
	reach := map[string]Reachability{}
	if a.Reachability != nil {
		for _, r := range a.Reachability(ctx) {
			reach[r.Cluster] = r
		}
	}
	for _, name := range a.Clusters {
		st := ClusterStatus{Name: name}
		if r, ok := reach[name]; ok {
			st.Etcd = &r
		}
		out.Clusters = append(out.Clusters, st)
	}
	for _, p := range pauses {
		if p.Cluster == remediator.AllClusters {
			out.PausedAll = &p
			continue
		}
		if i := slices.IndexFunc(out.Clusters, func(s ClusterStatus) bool { return s.Name == p.Cluster }); i >= 0 {
			out.Clusters[i].Paused = &p
		}
	}
	return out, nil
}
