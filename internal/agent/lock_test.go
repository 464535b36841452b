package agent

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
)

// An etcd that stopped answering may still be closing its files: the data dir is whole only
// once it let go of the locks it holds, the way etcd takes them.
func TestTheDataDirIsWholeOnceEtcdLetsGoOfItsFiles(t *testing.T) {
	dir := t.TempDir()
	wal := filepath.Join(dir, "member", "wal", "0000000000000000-0000000000000000.wal")
	db := filepath.Join(dir, "member", "snap", "db")
	for _, f := range []string{wal, db} {
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if held := waitUnlocked(context.Background(), dir, 0); held != "" {
		t.Fatalf("nothing holds the files, yet %s is reported held", held)
	}

	// etcd's WAL lock, as etcd takes it.
	l, err := fileutil.LockFile(wal, os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if held := waitUnlocked(context.Background(), dir, 0); held != wal {
		t.Errorf("with the WAL locked: %q, want %s", held, wal)
	}
	l.Close()

	// bbolt's lock on the backend.
	f, err := os.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if held := waitUnlocked(context.Background(), dir, 0); held != db {
		t.Errorf("with the backend locked: %q, want %s", held, db)
	}
	f.Close()
	if held := waitUnlocked(context.Background(), dir, 0); held != "" {
		t.Errorf("after both let go: %s still reported held", held)
	}
}
