package etcdtest

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Pid is the member's process (0 if it never started).
func (m *Member) Pid() int {
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// SlowDisk makes the etcd process pid answer as one on a disk too slow for it does: every
// request waits, now and then past a client's timeout. In a duty cycle it stops the process
// (SIGSTOP) for stall and lets it run (SIGCONT) for run, until stop is called or the test
// ends; stop leaves the process running.
func SlowDisk(t testing.TB, pid int, stall, run time.Duration) (stop func()) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("etcdtest: slow disk: no process %d", pid)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer syscall.Kill(pid, syscall.SIGCONT)
		for {
			for _, phase := range []struct {
				sig syscall.Signal
				d   time.Duration
			}{{syscall.SIGSTOP, stall}, {syscall.SIGCONT, run}} {
				if err := syscall.Kill(pid, phase.sig); err != nil {
					return // the process is gone
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(phase.d):
				}
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}
