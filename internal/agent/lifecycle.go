package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/manifest"
	"github.com/remediator/remediator/internal/poll"
)

// How the agent tells that a component has really stopped.
const (
	// stopSettle is how long a stopped component must stay quiet before it counts as stopped.
	stopSettle = 2 * time.Second
	// stopInterval is how often a stopping component is looked at.
	stopInterval = 200 * time.Millisecond
	// dialTimeout bounds one look at whether something answers on a component's address.
	dialTimeout = time.Second
	// unlockWait is how long an etcd that stopped answering may take to close its files.
	unlockWait = 10 * time.Second
	// unlockInterval is how often the locks of etcd's files are tried while it closes them.
	unlockInterval = 100 * time.Millisecond
)

// stop stops the component, waits until it has really stopped, and reports it.
func (a *Agent) stop(ctx context.Context, act remediator.NodeAction) (remediator.NodeResult, error) {
	out, err := a.stopQuiet(ctx, act.Component, waitFor(act))
	return a.inspected(act.Component, out, err)
}

// start starts the component and reports it; the health action says when it serves.
func (a *Agent) start(ctx context.Context, act remediator.NodeAction) (remediator.NodeResult, error) {
	out, err := a.rt.start(ctx, act.Component)
	return a.inspected(act.Component, out, err)
}

// stopQuiet stops the component and waits until it has been quiet for stopSettle: nothing
// answers on its address and, for etcd, nothing holds its data dir's files. A crash-looping
// member answers only now and then, and the kubelet may start it once more before it notices
// the manifest is gone: one quiet look is not enough. It fails if the component is still busy
// after wait.
func (a *Agent) stopQuiet(ctx context.Context, c remediator.Component, wait time.Duration) (string, error) {
	_, f, _, err := a.read(c)
	if err != nil {
		return "", err
	}
	addr := serving(c, f.Flags())
	out, err := a.rt.stop(ctx, c)
	if err != nil {
		return out, err
	}
	deadline := time.Now().Add(wait)
	var quietSince time.Time
	// A quiet spell that began by the deadline may settle after it: the wait covers that too,
	// and the looks it takes.
	err = poll.Until(ctx, wait+stopSettle+stopInterval+dialTimeout, stopInterval, func(context.Context) (bool, error) {
		busy, err := a.busy(c, f, addr)
		switch {
		case err != nil:
			return false, poll.Stop(err)
		case busy != "" && time.Now().After(deadline):
			return false, poll.Stop(remediator.Errorf(remediator.EUNAVAILABLE, "%s %s %s after it was stopped", c, busy, wait))
		case busy != "":
			quietSince = time.Time{}
		case quietSince.IsZero():
			quietSince = time.Now()
		}
		return !quietSince.IsZero() && time.Since(quietSince) >= stopSettle, nil
	})
	switch {
	case err == nil:
		return out + fmt.Sprintf("; nothing answers on %s any more", addr), nil
	case ctx.Err() != nil:
		return out, ctx.Err()
	case errors.Is(err, poll.ErrTimeout):
		return out, remediator.Errorf(remediator.EUNAVAILABLE, "%s did not stay quiet for %s within %s after it was stopped", c, stopSettle, wait)
	}
	return out, err
}

// busy says what shows the component still runs: it answers on its address, or (etcd) holds
// a lock on its data dir's files; "" when neither.
func (a *Agent) busy(c remediator.Component, f manifest.Flags, addr string) (string, error) {
	if answers(addr) {
		return "still answers on " + addr, nil
	}
	if c != remediator.ComponentEtcd {
		return "", nil
	}
	dir, err := a.dataDir()
	if err != nil {
		return "", err
	}
	if held := lockedFile(dir); held != "" {
		return "still holds " + held, nil
	}
	return "", nil
}

// answers says whether something takes connections on addr.
func answers(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// stoppedData returns etcd's flags and data dir, refusing unless etcd is stopped: its data
// dir must not be touched while it runs.
func (a *Agent) stoppedData(ctx context.Context) (map[string]string, string, error) {
	_, f, _, err := a.read(remediator.ComponentEtcd)
	if err != nil {
		return nil, "", err
	}
	dir, err := a.dataDir()
	if err != nil {
		return nil, "", err
	}
	if err := a.sameDataDir(f); err != nil {
		return nil, "", err
	}
	if a.rt.running(remediator.ComponentEtcd) {
		return nil, "", remediator.Errorf(remediator.EPRECONDITION, "etcd is configured to run on node %s: stop it first", a.cfg.Node)
	}
	flags := f.Flags()
	if addr := serving(remediator.ComponentEtcd, flags); answers(addr) {
		return nil, "", remediator.Errorf(remediator.EPRECONDITION, "something still answers on etcd's address %s on node %s: not touching its data", addr, a.cfg.Node)
	}
	// etcd stops answering early in its shutdown and closes its files last: its data is
	// whole once it lets go of their locks.
	if err := a.released(ctx, unlockWait); err != nil {
		return nil, "", err
	}
	return flags, dir, nil
}

// released waits until etcd, stopped, has let go of its data dir's files.
func (a *Agent) released(ctx context.Context, wait time.Duration) error {
	dir, err := a.dataDir()
	if err != nil {
		return err
	}
	if held := waitUnlocked(ctx, dir, wait); held != "" {
		if err := ctx.Err(); err != nil {
			return err
		}
		return remediator.Errorf(remediator.EUNAVAILABLE, "etcd on node %s still holds %s: it is still shutting down", a.cfg.Node, held)
	}
	return nil
}

// waitUnlocked waits until no process holds a lock on the WAL files and the backend of the
// data dir, and returns the one still held when the wait is over (or ctx ended), or "". With
// no wait it looks once. It takes the locks the way etcd does (etcd's fileutil for the WAL,
// flock for bbolt's db) and lets go at once.
func waitUnlocked(ctx context.Context, dir string, wait time.Duration) string {
	// Looked at before the wait, so that a wait cut short by ctx never reports the files free.
	held := lockedFile(dir)
	if held == "" || wait <= 0 {
		return held
	}
	_ = poll.Until(ctx, wait, unlockInterval, func(context.Context) (bool, error) {
		held = lockedFile(dir)
		return held == "", nil
	})
	return held
}

func lockedFile(dir string) string {
	wals, _ := filepath.Glob(filepath.Join(dir, "member", "wal", "*.wal"))
	for _, w := range wals {
		l, err := fileutil.TryLockFile(w, os.O_WRONLY, 0)
		if errors.Is(err, fileutil.ErrLocked) {
			return w
		}
		if err == nil {
			l.Close()
		}
	}
	db := filepath.Join(dir, "member", "snap", "db")
	f, err := os.Open(db)
	if err != nil {
		return ""
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return db
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return ""
}
