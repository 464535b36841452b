package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/poll"
)

// How the health action asks.
const (
	// healthInterval is how often an unhealthy component is asked again.
	healthInterval = 500 * time.Millisecond
	// healthTimeout bounds one request, as long as kubeadm's probes wait: kube-apiserver's
	// /readyz waits for its etcd check, which may itself take up to --etcd-readycheck-timeout.
	healthTimeout = 15 * time.Second
)

// health asks the component's health endpoint until it answers 200, for up to the action's
// wait. Each request may take healthTimeout, even past the wait: a wait shorter than one
// answer (a single look) still gets that answer.
func (a *Agent) health(ctx context.Context, act remediator.NodeAction) (remediator.NodeResult, error) {
	c, wait := act.Component, waitFor(act)
	res, err := a.inspect(c)
	if err != nil {
		return res, err
	}
	target := a.healthURL(c, res.Flags)
	var why string
	err = poll.Looks(ctx, wait, healthInterval, func(ctx context.Context) (bool, error) {
		body, code, err := a.get(ctx, target)
		res.HealthOutput = strings.TrimSpace(body)
		if err == nil && code == http.StatusOK {
			res.Output = fmt.Sprintf("%s answers %d", target, code)
			return true, nil
		}
		why = fmt.Sprintf("status %d", code)
		if err != nil {
			why = err.Error()
		}
		return false, nil
	})
	if err == nil {
		return res, nil
	}
	if ctx.Err() != nil {
		why = ctx.Err().Error()
	}
	res.Output = fmt.Sprintf("%s not healthy after %s: %s", target, wait, why)
	return res, remediator.Errorf(remediator.EUNAVAILABLE, "%s is not healthy on node %s after %s: %s: %s", c, a.cfg.Node, wait, why, res.HealthOutput)
}

// healthURL is agent.etcd_health_url or agent.apiserver_health_url, or else the endpoint the
// component's flags say it serves its health on.
func (a *Agent) healthURL(c remediator.Component, flags map[string]string) string {
	if c == remediator.ComponentAPIServer {
		if a.cfg.APIServerHealthURL != "" {
			return a.cfg.APIServerHealthURL
		}
		return "https://" + serving(c, flags) + "/readyz?verbose"
	}
	if a.cfg.EtcdHealthURL != "" {
		return a.cfg.EtcdHealthURL
	}
	if m, _, _ := strings.Cut(flags["listen-metrics-urls"], ","); m != "" {
		return strings.TrimSuffix(m, "/") + "/health"
	}
	scheme := "http"
	if strings.HasPrefix(flags["listen-client-urls"], "https") {
		scheme = "https"
	}
	return scheme + "://" + serving(c, flags) + "/health"
}

func (a *Agent) get(ctx context.Context, target string) (string, int, error) {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return string(body), resp.StatusCode, err
}
