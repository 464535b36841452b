package etcdops

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

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
