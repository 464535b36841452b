// Package agent is the node agent: it runs on a control-plane node and carries out the typed,
// node-local actions of remediations (stop or start a component, edit its flags, suspend
// etcd's liveness probe, move or restore etcd's data dir). Every path comes from the agent's
// own configuration; nothing received over the queue is run as a command.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/remediator/remediator"
)

// defaultWait bounds how long an action waits for its effect when it names no timeout.
const defaultWait = 2 * time.Minute

// Agent carries out node actions, one at a time.
type Agent struct {
	cfg  Config
	rt   runtime
	http *http.Client
	mu   sync.Mutex
	now  func() time.Time
	// found is etcd's command line as the agent found it on disk when it started: its data
	// dir and its own name and peer URLs come from there, never from a file an action rewrote.
	found found
}

// found is etcd's flags as the agent found them at start, or why it could not read them.
type found struct {
	flags map[string]string
	err   error
}

func (f found) why() string {
	if f.err != nil {
		return " (" + f.err.Error() + ")"
	}
	return ""
}

// New checks the configuration, fills what it leaves empty from Defaults, and returns the
// agent.
func New(cfg Config) (*Agent, error) {
	cfg = cfg.withDefaults()
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Node == "" || cfg.Cluster == "" {
		return nil, errors.New("agent: node and cluster must be set")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, now: time.Now,
		// The health endpoints are loopback and unauthenticated; like the kubelet's probes,
		// the check does not verify the serving certificate.
		http: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	if cfg.Runtime == RuntimeService {
		a.rt = &service{a: a}
	} else {
		a.rt = &staticPods{a: a}
	}
	if _, f, _, err := a.read(remediator.ComponentEtcd); err != nil {
		a.found.err = err
	} else {
		a.found.flags = f.Flags()
	}
	return a, nil
}

// handler carries out one kind of action, which validate has checked.
type handler func(a *Agent, ctx context.Context, act remediator.NodeAction) (remediator.NodeResult, error)

// kind is what the agent knows of one kind of action.
type kind struct {
	run handler
	// etcdOnly kinds act on what only etcd has: a liveness probe remediator suspends, a data
	// dir.
	etcdOnly bool
	// check refuses an action of the kind that could do nothing, before anything is read.
	check func(remediator.NodeAction) error
}

// actions are the node actions the agent carries out: a new one is an entry here.
var actions = map[remediator.ActionKind]kind{
	remediator.ActionInspect:         {run: (*Agent).inspectAction},
	remediator.ActionStop:            {run: (*Agent).stop},
	remediator.ActionStart:           {run: (*Agent).start},
	remediator.ActionSetFlags:        {run: (*Agent).setFlags, check: somethingToSet},
	remediator.ActionRollback:        {run: (*Agent).rollback},
	remediator.ActionSuspendProbe:    {run: (*Agent).probe, etcdOnly: true},
	remediator.ActionRestoreProbe:    {run: (*Agent).probe, etcdOnly: true},
	remediator.ActionMoveData:        {run: (*Agent).backupData, etcdOnly: true},
	remediator.ActionCopyData:        {run: (*Agent).backupData, etcdOnly: true},
	remediator.ActionRemoveSnapFiles: {run: (*Agent).removeSnapFiles, etcdOnly: true},
	remediator.ActionRestoreSnapshot: {run: (*Agent).restoreSnapshot, etcdOnly: true},
	remediator.ActionHealth:          {run: (*Agent).health},
}

// Do carries out one action. Every action is idempotent: asked again after a lost reply, it
// finds its work done and says so.
func (a *Agent) Do(ctx context.Context, act remediator.NodeAction) (remediator.NodeResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	log := a.cfg.Log.With("action", act.Kind, "component", act.Component, "incident", act.Incident)
	res, err := a.do(ctx, act)
	res.Node = a.cfg.Node
	if err != nil {
		log.Warn("node action failed", "err", err)
		return res, err
	}
	log.Info("node action done", "output", res.Output)
	return res, nil
}

func (a *Agent) do(ctx context.Context, act remediator.NodeAction) (remediator.NodeResult, error) {
	k, err := validate(act)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	return k.run(a, ctx, act)
}

// validate checks an action against what its kind takes, and returns the kind.
func validate(act remediator.NodeAction) (kind, error) {
	k, ok := actions[act.Kind]
	if !ok {
		return kind{}, remediator.Errorf(remediator.EINVALID, "unknown action %q", act.Kind)
	}
	switch act.Component {
	case remediator.ComponentEtcd, remediator.ComponentAPIServer:
	case "":
		return kind{}, remediator.Errorf(remediator.EINVALID, "action %s: no component", act.Kind)
	default:
		return kind{}, remediator.Errorf(remediator.EINVALID, "action %s: unknown component %q", act.Kind, act.Component)
	}
	if k.etcdOnly && act.Component != remediator.ComponentEtcd {
		return kind{}, remediator.Errorf(remediator.EINVALID, "action %s is for etcd only", act.Kind)
	}
	if act.Incident == "" || strings.ContainsAny(act.Incident, "/\\.") {
		return kind{}, remediator.Errorf(remediator.EINVALID, "action %s: incident %q cannot name a backup folder", act.Kind, act.Incident)
	}
	if k.check != nil {
		if err := k.check(act); err != nil {
			return kind{}, err
		}
	}
	if len(act.Incident) > 128 {
		return kind{}, remediator.Errorf(remediator.EINVALID, "action %s: incident %q is too long to name a backup folder", act.Kind, act.Incident)
	}
	return k, nil
}

// waitFor is how long the action may wait for its effect.
func waitFor(act remediator.NodeAction) time.Duration {
	if w := time.Duration(act.Timeout); w > 0 {
		return w
	}
	return defaultWait
}

// inspectAction reports what the component looks like now, and changes nothing.
func (a *Agent) inspectAction(_ context.Context, act remediator.NodeAction) (remediator.NodeResult, error) {
	return a.inspect(act.Component)
}

// inspected reports the component after an action that said out and failed with err, if it
// did.
func (a *Agent) inspected(c remediator.Component, out string, err error) (remediator.NodeResult, error) {
	res, ierr := a.inspect(c)
	res.Output = out
	return res, errors.Join(err, ierr)
}
