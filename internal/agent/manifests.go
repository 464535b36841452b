package agent

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/manifest"
)

// somethingToSet refuses a set-flags action that names no flag.
func somethingToSet(act remediator.NodeAction) error {
	if len(act.Set) == 0 && len(act.Remove) == 0 {
		return remediator.Errorf(remediator.EINVALID, "action set-flags: no flag to set or remove")
	}
	return nil
}

// setFlags sets and removes the component's flags that allowed lets it, after a backup.
func (a *Agent) setFlags(_ context.Context, act remediator.NodeAction) (remediator.NodeResult, error) {
	path, f, mode, err := a.read(act.Component)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	if err := a.allowed(act, f.Flags()); err != nil {
		return remediator.NodeResult{}, err
	}
	old := f.Bytes()
	var did []string
	for _, name := range slices.Sorted(maps.Keys(act.Set)) {
		changed, err := f.Set(name, act.Set[name])
		if err != nil {
			return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "%s: %w", path, err)
		}
		if changed {
			did = append(did, "set --"+strings.TrimSuffix(name+"="+act.Set[name], "="))
		}
	}
	for _, name := range act.Remove {
		if f.Remove(name) {
			did = append(did, "removed --"+name)
		}
	}
	if len(did) == 0 {
		res, err := a.inspect(act.Component)
		res.Output = fmt.Sprintf("%s already had the flags asked for; nothing changed", path)
		return res, err
	}
	backup, err := a.save(act.Incident, path, old, f.Bytes(), mode)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	res, err := a.inspect(act.Component)
	res.Changed, res.Backup = true, backup
	res.Output = fmt.Sprintf("%s: %s (backup %s)", path, strings.Join(did, ", "), backup)
	return res, err
}

// rollback puts back the named backup of the component's file, or the incident's first
// backup of it (the file as remediator found it) when none is named.
func (a *Agent) rollback(_ context.Context, act remediator.NodeAction) (remediator.NodeResult, error) {
	path, f, mode, err := a.read(act.Component)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	backup := act.Backup
	if backup == "" {
		matches, _ := filepath.Glob(filepath.Join(a.cfg.BackupDir, act.Incident, filepath.Base(path)+".*"))
		slices.Sort(matches)
		if len(matches) == 0 {
			return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "no backup of %s for incident %s to roll back to", path, act.Incident)
		}
		backup = matches[0]
	}
	backup, err = a.incidentBackup(act.Incident, backup)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	data, err := os.ReadFile(backup)
	if err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "backup: %w", err)
	}
	if _, err := a.rt.parse(act.Component, data); err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "backup %s does not parse: %w", backup, err)
	}
	cur := f.Bytes()
	if string(cur) == string(data) {
		res, err := a.inspect(act.Component)
		res.Output, res.Backup = fmt.Sprintf("%s is already as in %s", path, backup), backup
		return res, err
	}
	// The file as it was before the rollback is kept too, so a rollback can be undone.
	if _, err := a.save(act.Incident, path, cur, data, mode); err != nil {
		return remediator.NodeResult{}, err
	}
	res, err := a.inspect(act.Component)
	res.Changed, res.Backup = true, backup
	res.Output = fmt.Sprintf("%s rolled back to %s", path, backup)
	return res, err
}

// probe suspends or restores etcd's liveness probe in its static pod manifest.
func (a *Agent) probe(_ context.Context, act remediator.NodeAction) (remediator.NodeResult, error) {
	path, f, mode, err := a.read(act.Component)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	pod, ok := f.(*manifest.Pod)
	if !ok {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "%s is not run as a static pod on node %s: it has no liveness probe to change", act.Component, a.cfg.Node)
	}
	old := pod.Bytes()
	var changed bool
	if act.Kind == remediator.ActionSuspendProbe {
		changed, err = pod.SuspendProbe()
	} else {
		changed, err = pod.RestoreProbe()
	}
	if err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "%s: %w", path, err)
	}
	var backup string
	if changed {
		if backup, err = a.save(act.Incident, path, old, pod.Bytes(), mode); err != nil {
			return remediator.NodeResult{}, err
		}
	}
	res, err := a.inspect(act.Component)
	res.Changed, res.Backup = changed, backup
	switch {
	case act.Kind == remediator.ActionSuspendProbe && changed:
		res.Output = fmt.Sprintf("%s: liveness probe %s commented out (backup %s)", path, res.Probe.Target, backup)
	case act.Kind == remediator.ActionSuspendProbe && res.Probe.Present:
		res.Output = fmt.Sprintf("%s: liveness probe already suspended", path)
	case act.Kind == remediator.ActionSuspendProbe:
		res.Output = fmt.Sprintf("%s has no liveness probe", path)
	case changed:
		res.Output = fmt.Sprintf("%s: liveness probe %s restored (backup %s)", path, res.Probe.Target, backup)
	default:
		res.Output = fmt.Sprintf("%s: no suspended liveness probe to restore", path)
	}
	return res, err
}
