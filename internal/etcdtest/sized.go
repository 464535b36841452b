package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Production sizes: Fill leaves only history; FillSized leaves live data under it too, and a
// frozen cluster gives every run of a comparison the same bytes.

// Sized is a cluster filled to production sizes: live keys, and history over them that a
// compaction frees.
type Sized struct {
	// Live is the bytes of live data; History the bytes of overwritten values on top.
	Live, History int64
	// Quota is --quota-backend-bytes: with Live+History above it, the cluster ends in NOSPACE.
	Quota int64
}

// ValueSize is the size of one value: large enough to fill hundreds of MiB quickly.
const ValueSize = 256 << 10

// FillSized writes s.Live bytes of live keys, then overwrites them until s.History more bytes
// are written or etcd refuses with NOSPACE; the values are the same on every run, so two
// clusters filled alike hold the same data.
func FillSized(ctx context.Context, cl *clientv3.Client, s Sized) error {
	keys := max(int(s.Live/ValueSize), 1)
	writes := keys + int(s.History/ValueSize)
	value := strings.Repeat("v", ValueSize)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range writes {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for i := range next {
				pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := cl.Put(pctx, fmt.Sprintf("live/%06d", i%keys), value)
				pcancel()
				if errors.Is(rpctypes.Error(err), rpctypes.ErrNoSpace) {
					cancel() // full: the others stop too
					return
				}
				if err != nil && ctx.Err() == nil {
					errs[w] = fmt.Errorf("fill: write %d: %w", i, err)
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Frozen is a filled cluster, stopped, whose data dirs are kept so that every contender
// starts from the same bytes.
type Frozen struct {
	Cluster  *Cluster
	pristine string
}

// Freeze stops the cluster and copies its data dirs aside.
func (c *Cluster) Freeze(tb testing.TB) *Frozen {
	tb.Helper()
	c.Stop()
	f := &Frozen{Cluster: c, pristine: tb.TempDir()}
	for _, m := range c.Members {
		copyDir(tb, m.DataDir, filepath.Join(f.pristine, m.Name))
	}
	return f
}

// Thaw puts the pristine data dirs back and starts the members on their old ports.
func (f *Frozen) Thaw(tb testing.TB) *Cluster {
	tb.Helper()
	f.Cluster.Stop()
	for _, m := range f.Cluster.Members {
		if err := os.RemoveAll(m.DataDir); err != nil {
			tb.Fatal(err)
		}
		copyDir(tb, filepath.Join(f.pristine, m.Name), m.DataDir)
		if err := m.Start(); err != nil {
			tb.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.Cluster.WaitReady(ctx, time.Minute); err != nil {
		tb.Fatal(err)
	}
	return f.Cluster
}

func copyDir(tb testing.TB, from, to string) {
	tb.Helper()
	if out, err := exec.Command("cp", "-a", "--reflink=auto", from, to).CombinedOutput(); err != nil {
		tb.Fatalf("cp %s %s: %v: %s", from, to, err, out)
	}
}
