package etcdops

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
)

// SnapshotInfo describes a saved snapshot; Revision is the caller's to fill in (etcd does not
// say which revision a snapshot stream starts at).
type SnapshotInfo struct {
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	Revision int64  `json:"revision"`
	Version  string `json:"version,omitempty"`
}

// Snapshot streams a snapshot of the keyspace from the member the client is connected to and
// saves it at path, through a temporary file that is synced and renamed, so a file at path is
// always a whole snapshot. It refuses, before writing anything, if the folder has less than
// need bytes free.
func Snapshot(ctx context.Context, mt clientv3.Maintenance, path string, need int64) (SnapshotInfo, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot: %w", err)
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot: free space of %s: %w", dir, err)
	}
	if free := int64(fs.Bavail) * int64(fs.Bsize); free < need {
		return SnapshotInfo{}, remediator.Errorf(remediator.EPRECONDITION,
			"snapshot: %s has %s free, the snapshot needs about %s: free some space or move data_dir",
			dir, remediator.HumanBytes(free), remediator.HumanBytes(need))
	}
	resp, err := mt.SnapshotWithVersion(ctx)
	if err != nil {
		return SnapshotInfo{}, Classify(err, "snapshot")
	}
	defer resp.Snapshot.Close()
	tmp := path + ".part"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot: %w", err)
	}
	defer os.Remove(tmp) // a no-op once renamed
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), resp.Snapshot)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return SnapshotInfo{}, Classify(err, "snapshot: receive into %s", tmp)
	}
	if err := os.Rename(tmp, path); err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot: %w", err)
	}
	return SnapshotInfo{Path: path, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Version: resp.Version}, nil
}

// snapshotTimeout bounds saving one snapshot: a few GiB over a slow link.
const snapshotTimeout = 30 * time.Minute

// SnapshotSource is the member a snapshot step saves from, as the remediation finds it.
type SnapshotSource struct {
	// Maintenance is connected to that member.
	Maintenance clientv3.Maintenance
	// Via names the member, for the output; empty when the client picks it.
	Via string
	// Statuses are the members' figures: the largest db sets how much room the file needs.
	Statuses []remediator.MemberStatus
	// Revision is what the snapshot holds, when the remediation knows it better than the
	// highest revision of Statuses.
	Revision int64
	// Close, when set, releases the connection once the snapshot is saved.
	Close func()
}

// SnapshotStep is the step that saves a snapshot of the keyspace to
// backupDir/<cluster>/<incident>.db before anything changes, with room for the largest
// member's db checked first. It records what it saved; an attempt after an interruption finds
// the whole file and does not save it again.
func SnapshotStep(backupDir string, source func(ctx context.Context, in remediator.StepInput) (SnapshotSource, error)) remediator.StepFunc {
	return func(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
		path := filepath.Join(backupDir, in.Incident.Cluster, in.Incident.ID+".db")
		saved, ok, err := remediator.Progress[SnapshotInfo](in)
		if err != nil {
			return remediator.StepResult{}, err
		}
		if fi, statErr := os.Stat(path); ok && saved.Path == path && statErr == nil && fi.Size() == saved.Size {
			return remediator.StepResult{Output: saved.describe("") + " (by an earlier attempt)"}, nil
		}
		src, err := source(ctx, in)
		if err != nil {
			return remediator.StepResult{}, err
		}
		if src.Close != nil {
			defer src.Close()
		}
		var largest, revision int64
		for _, s := range src.Statuses {
			largest = max(largest, s.DBSize)
			revision = max(revision, s.Revision)
		}
		ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
		defer cancel()
		info, err := Snapshot(ctx, src.Maintenance, path, largest+largest/10+1<<20)
		if err != nil {
			return remediator.StepResult{}, err
		}
		info.Revision = cmp.Or(src.Revision, revision)
		if err := in.SaveProgress(ctx, info); err != nil {
			return remediator.StepResult{}, err
		}
		return remediator.StepResult{Output: info.describe(src.Via)}, nil
	}
}

func (s SnapshotInfo) describe(from string) string {
	if from != "" {
		from = " from " + from
	}
	return fmt.Sprintf("saved %s%s (cluster at revision %d, etcd storage %s) to %s, sha256 %s",
		remediator.HumanBytes(s.Size), from, s.Revision, s.Version, s.Path, s.SHA256)
}
