package agent

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/remediator/remediator"
)

// backupPath is a new backup's path: backup_dir/<incident>/<name>.<time>.
func (a *Agent) backupPath(incident, name string) string {
	return filepath.Join(a.cfg.BackupDir, incident, name+"."+a.now().UTC().Format("20060102T150405.000000000Z"))
}

// save backs up the file, then writes its new content.
func (a *Agent) save(incident, path string, old, data []byte, mode os.FileMode) (string, error) {
	backup := a.backupPath(incident, filepath.Base(path))
	if err := os.MkdirAll(filepath.Dir(backup), 0o700); err != nil {
		return "", remediator.Errorf(remediator.EPRECONDITION, "backup dir: %w", err)
	}
	if err := os.WriteFile(backup, old, 0o600); err != nil {
		return "", remediator.Errorf(remediator.EPRECONDITION, "backup of %s: %w", path, err)
	}
	if err := writeFile(path, data, mode); err != nil {
		return backup, remediator.Errorf(remediator.EPRECONDITION, "write %s: %w", path, err)
	}
	return backup, nil
}

// writeFile replaces path atomically, through a dot-file next to it that the kubelet ignores.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".remediator.tmp")
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// incidentBackup returns the source a rollback or a restore may put back: path with every
// symbolic link resolved, which must then lie inside the incident's own backup folder (itself
// no link), so that only what remediator saved for the same incident comes back. The caller
// reads the resolved path, not path, which could be pointed elsewhere after the check.
func (a *Agent) incidentBackup(incident, path string) (string, error) {
	folder := filepath.Join(a.cfg.BackupDir, incident)
	if fi, err := os.Lstat(folder); err != nil || !fi.IsDir() {
		return "", remediator.Errorf(remediator.EFORBIDDEN, "incident %s has no backup folder on node %s (a folder, not a link): %s", incident, a.cfg.Node, folder)
	}
	folder, err := filepath.EvalSymlinks(folder)
	if err != nil {
		return "", remediator.Errorf(remediator.EPRECONDITION, "incident %s's backup folder on node %s: %w", incident, a.cfg.Node, err)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", remediator.Errorf(remediator.EPRECONDITION, "backup %s: %w", path, err)
	}
	if !inside(real, folder) || real == folder {
		return "", remediator.Errorf(remediator.EFORBIDDEN, "%s is not one of incident %s's backups (in %s)", path, incident, folder)
	}
	return real, nil
}

// inside says whether dir is parent or lies under it.
func inside(dir, parent string) bool {
	d, err1 := filepath.Abs(dir)
	p, err2 := filepath.Abs(parent)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(p, d)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
