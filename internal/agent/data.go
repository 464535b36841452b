package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/remediator/remediator"
)

// backupData moves or copies a stopped etcd's data dir to backup_dir/<incident>/etcd-data.<time>.
// Moved, the member starts empty (as a replacement); copied, it starts as it was.
func (a *Agent) backupData(ctx context.Context, act remediator.NodeAction) (remediator.NodeResult, error) {
	_, dir, err := a.stoppedData(ctx)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	previous, _ := filepath.Glob(filepath.Join(a.cfg.BackupDir, act.Incident, "etcd-data.*"))
	empty, err := isEmpty(dir)
	if err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "data dir %s: %w", dir, err)
	}
	if empty {
		res, err := a.inspect(remediator.ComponentEtcd)
		if act.Kind == remediator.ActionMoveData && len(previous) > 0 {
			res.Backup = previous[len(previous)-1]
			res.Output = fmt.Sprintf("data dir %s is already moved to %s", dir, res.Backup)
			return res, err
		}
		res.Output = fmt.Sprintf("data dir %s is empty or absent: nothing to back up", dir)
		return res, err
	}
	backup := a.backupPath(act.Incident, "etcd-data")
	if err := os.MkdirAll(filepath.Dir(backup), 0o700); err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "backup dir: %w", err)
	}
	if err := copyTree(dir, backup); err != nil {
		os.RemoveAll(backup)
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "copy %s to %s: %w", dir, backup, err)
	}
	verb := "copied"
	if act.Kind == remediator.ActionMoveData {
		// The copy is complete before anything is removed. The data dir itself stays (it may
		// be a mount point); only what it holds goes.
		entries, err := os.ReadDir(dir)
		if err != nil {
			return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "data dir %s: %w", dir, err)
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "empty data dir %s: %w", dir, err)
			}
		}
		verb = "moved"
	}
	res, err := a.inspect(remediator.ComponentEtcd)
	res.Changed, res.Backup = true, backup
	res.Output = fmt.Sprintf("%s data dir %s to %s", verb, dir, backup)
	return res, err
}

func isEmpty(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	return len(entries) == 0, err
}

// copyTree copies a directory of regular files, keeping their modes, and syncs each file.
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		target := filepath.Join(to, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case d.Type().IsRegular():
			return copyFile(path, target, info.Mode().Perm())
		}
		return fmt.Errorf("%s is neither a file nor a folder", path)
	})
}

func copyFile(from, to string, mode fs.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// removeSnapFiles deletes a stopped etcd's raft snapshots (member/snap/*.snap), as seed 003
// does when etcd panics on a missing snapshot db: etcd then replays its WAL.
func (a *Agent) removeSnapFiles(ctx context.Context, _ remediator.NodeAction) (remediator.NodeResult, error) {
	_, dir, err := a.stoppedData(ctx)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "member", "snap", "*.snap"))
	var removed []string
	for _, s := range snaps {
		if err := os.Remove(s); err != nil {
			return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "remove %s: %w", s, err)
		}
		removed = append(removed, filepath.Base(s))
	}
	res, err := a.inspect(remediator.ComponentEtcd)
	res.Changed = len(removed) > 0
	res.Output = fmt.Sprintf("removed %d raft snapshot files from %s: %s", len(removed), filepath.Join(dir, "member", "snap"), strings.Join(removed, ", "))
	if len(removed) == 0 {
		res.Output = fmt.Sprintf("no raft snapshot files in %s", filepath.Join(dir, "member", "snap"))
	}
	return res, err
}

// restoreSnapshot rebuilds etcd's data dir from a db file in the backup dir, as the member's
// flags describe it (name, peer URLs, initial cluster), with the tool of the member's version:
// etcdutl, or etcdctl for etcd 3.4 and older.
func (a *Agent) restoreSnapshot(ctx context.Context, act remediator.NodeAction) (remediator.NodeResult, error) {
	db := act.Backup
	if !filepath.IsAbs(db) {
		db = filepath.Join(a.cfg.BackupDir, act.Incident, db)
	}
	db, err := a.incidentBackup(act.Incident, db)
	if err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.ErrorCode(err), "restore-snapshot: %w", err)
	}
	if fi, err := os.Stat(db); err != nil || !fi.Mode().IsRegular() {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "restore-snapshot: %s is not a db file", db)
	}
	flags, dir, err := a.stoppedData(ctx)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	if empty, err := isEmpty(dir); err != nil || !empty {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "restore-snapshot: data dir %s is not empty: move it to the backup dir first", dir)
	}
	image, err := a.etcdImage()
	if err != nil {
		return remediator.NodeResult{}, err
	}
	tool := a.cfg.restorer(image)
	// The tool writes a new data dir itself, which must not exist, while the data dir stays
	// where it is: it may be a mount point (the agent's own hostPath mount, in a pod). So the
	// tool writes beside the backups, and what it wrote is copied in.
	staging := a.backupPath(act.Incident, "etcd-restore")
	if err := os.MkdirAll(filepath.Dir(staging), 0o700); err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "restore-snapshot: backup dir: %w", err)
	}
	defer os.RemoveAll(staging)
	argv := []string{tool.bin, "snapshot", "restore", db, "--data-dir", staging, "--skip-hash-check"}
	for _, name := range []string{"name", "initial-cluster", "initial-cluster-token", "initial-advertise-peer-urls"} {
		v := flags[name]
		if name == "name" || name == "initial-advertise-peer-urls" {
			// The member's own identity, as the agent found it: no action changes it.
			v = cmp.Or(a.found.flags[name], v)
		}
		if v != "" {
			argv = append(argv, "--"+name, v)
		}
	}
	out, err := run(ctx, argv, tool.env...)
	if err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "restore-snapshot with %s (%s): %w", tool.name, tool.why, err)
	}
	if err := copyTree(staging, dir); err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "restore-snapshot: copy the restored data into %s: %w", dir, err)
	}
	res, err := a.inspect(remediator.ComponentEtcd)
	res.Changed, res.Backup = true, db
	res.Output = fmt.Sprintf("restored %s into %s with %s snapshot restore --skip-hash-check (%s): %s", db, dir, tool.name, tool.why, lastLine(out))
	return res, err
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}
