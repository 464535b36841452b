package remediator

import "time"

// ActionKind is what a node agent is asked to do. Agents only carry out these typed actions,
// with paths from their own configuration, never a command received over the queue.
type ActionKind string

// The node actions.
const (
	// ActionInspect reports a component's flags, whether it runs, its liveness probe and,
	// for etcd, its data dir: it changes nothing.
	ActionInspect ActionKind = "inspect"
	// ActionStop stops a component and waits until it no longer serves.
	ActionStop ActionKind = "stop"
	// ActionStart starts a stopped component.
	ActionStart ActionKind = "start"
	// ActionSetFlags sets and removes command-line flags of a component, after a backup.
	ActionSetFlags ActionKind = "set-flags"
	// ActionRollback puts back a component's manifest or flags file from a backup.
	ActionRollback ActionKind = "rollback"
	// ActionSuspendProbe turns off etcd's liveness probe, keeping it in the file to restore.
	ActionSuspendProbe ActionKind = "suspend-probe"
	// ActionRestoreProbe turns the suspended liveness probe back on.
	ActionRestoreProbe ActionKind = "restore-probe"
	// ActionMoveData moves a stopped etcd's data dir to the backup dir, leaving none.
	ActionMoveData ActionKind = "move-data"
	// ActionCopyData copies a stopped etcd's data dir to the backup dir.
	ActionCopyData ActionKind = "copy-data"
	// ActionRemoveSnapFiles deletes a stopped etcd's member/snap/*.snap files (the raft
	// snapshots, not the db).
	ActionRemoveSnapFiles ActionKind = "remove-snap-files"
	// ActionRestoreSnapshot rebuilds a stopped etcd's absent data dir from a db file in the
	// agent's backup dir, as etcdutl snapshot restore does.
	ActionRestoreSnapshot ActionKind = "restore-snapshot"
	// ActionHealth asks the component's local health endpoint.
	ActionHealth ActionKind = "health"
)

// MaxCheckTimeout is the longest etcd check timeout (--etcd-healthcheck-timeout,
// --etcd-readycheck-timeout) a remediation may give kube-apiserver, and an agent takes: a
// longer wait only hides an etcd that fails.
const MaxCheckTimeout = time.Minute

// Component is a control-plane component an agent looks after.
type Component string

// The components.
const (
	ComponentEtcd      Component = "etcd"
	ComponentAPIServer Component = "kube-apiserver"
)

// NodeAction is one node-local action for the agent of a node.
type NodeAction struct {
	Kind      ActionKind `json:"kind"`
	Component Component  `json:"component,omitempty"`
	// Incident names the incident the action is for: backups are filed under it.
	Incident string `json:"incident"`
	// Set maps flag names (without dashes) to values; an empty value writes a bare flag
	// such as --force-new-cluster.
	Set map[string]string `json:"set,omitempty"`
	// Remove lists flag names to remove.
	Remove []string `json:"remove,omitempty"`
	// Backup names the backup to roll back to (the incident's latest when empty), or, for
	// restore-snapshot, the db file under the agent's backup dir.
	Backup string `json:"backup,omitempty"`
	// Timeout bounds how long the agent waits for the effect (stop, health); its default
	// when zero.
	Timeout Duration `json:"timeout,omitempty"`
}

// NodeResult is what an agent found and did.
type NodeResult struct {
	Node string `json:"node"`
	// Output says what the agent did, in a few lines for the operator.
	Output string `json:"output,omitempty"`
	// Running says whether the component is configured to run (its manifest is in the
	// manifests folder, or its service is started).
	Running bool `json:"running"`
	// Flags are the component's command-line flags after the action.
	Flags map[string]string `json:"flags,omitempty"`
	// Probe describes the component's liveness probe.
	Probe *Probe `json:"probe,omitempty"`
	// Backup is the backup the action made or used.
	Backup string `json:"backup,omitempty"`
	// DataDir is etcd's data dir and whether it holds a member.
	DataDir      string    `json:"data_dir,omitempty"`
	HasData      bool      `json:"has_data,omitempty"`
	SnapFiles    []string  `json:"snap_files,omitempty"`
	Changed      bool      `json:"changed,omitempty"`
	CheckedAt    time.Time `json:"checked_at,omitzero"`
	HealthOutput string    `json:"health_output,omitempty"`
	// DBSize is how much of etcd's backend file, member/snap/db, is on disk: what its
	// --quota-backend-bytes limits.
	DBSize int64 `json:"db_size,omitempty"`
}

// Probe is a liveness probe as the manifest declares it.
type Probe struct {
	// Present says whether the manifest has one at all.
	Present bool `json:"present"`
	// Suspended says it is turned off by remediator and can be restored.
	Suspended bool `json:"suspended,omitempty"`
	// Target is what it checks: an HTTP path such as /health?exclude=NOSPACE, or a command.
	Target string `json:"target,omitempty"`
}
