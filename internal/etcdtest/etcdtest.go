// Package etcdtest runs real etcd clusters for tests and the demo: the official etcd server,
// built from the tools/etcd module at its pinned version and cached between runs (or, for
// another Version, from tools/etcd-3.5, tools/etcd-3.6, or Debian's etcd 3.4), started as one
// process per member on free loopback ports.
package etcdtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator/internal/testproc"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Binary returns the etcd server of DefaultVersion: $REMEDIATOR_ETCD_BIN if set, or else one
// built from tools/etcd into the user cache, keyed by that module's files and the Go version.
func Binary() (string, error) {
	return DefaultVersion.Binary()
}

// Etcdutl returns DefaultVersion's etcdutl binary, for restoring a member from a db file:
// $REMEDIATOR_ETCDUTL_BIN if set, or else one built from tools/etcd/etcdutl next to the etcd
// binary, at the same version.
func Etcdutl() (string, error) {
	r, err := DefaultVersion.Restorer()
	return r.Path, err
}

// Options describe a cluster to start.
type Options struct {
	// Members is how many members to start (1 if zero).
	Members int
	// QuotaBytes is --quota-backend-bytes (etcd's default if zero).
	QuotaBytes int64
	// Dir holds the members' data dirs and logs.
	Dir string
	// Version is the etcd the members run (DefaultVersion if zero).
	Version Version
}

// Member is one running member.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	DataDir   string
	LogPath   string
	args      []string
	bin       string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// Cluster is a running cluster.
type Cluster struct {
	Members []*Member
}

// Start starts a cluster and waits until every member answers with a leader.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bin, err := opts.Version.Binary()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("etcdtest: %w", err)
	}
	n := max(opts.Members, 1)
	ports, err := testproc.FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	var initial []string
	for i := range n {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i+1),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			bin:       bin,
		}
		m.DataDir = filepath.Join(opts.Dir, m.Name+".etcd")
		m.LogPath = filepath.Join(opts.Dir, m.Name+".log")
		initial = append(initial, m.Name+"="+m.PeerURL)
		c.Members = append(c.Members, m)
	}
	token := fmt.Sprintf("remediator-test-%d", time.Now().UnixNano())
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name,
			"--data-dir", m.DataDir,
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--log-outputs", "stderr",
		}
		if opts.QuotaBytes > 0 {
			m.args = append(m.args, "--quota-backend-bytes", fmt.Sprint(opts.QuotaBytes))
		}
		for _, k := range slices.Sorted(maps.Keys(opts.Version.flags())) {
			m.args = append(m.args, "--"+k, opts.Version.flags()[k])
		}
		if err := m.Start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.WaitReady(ctx, 30*time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// New starts a cluster for a test and stops it when the test ends; if the test failed, the
// tail of each member's log goes to the test log.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			for _, m := range c.Members {
				t.Logf("etcd %s log (tail):\n%s", m.Name, testproc.Tail(m.Log(), 12))
			}
		}
	})
	return c
}

// Start starts (or restarts) the member's process, logging to LogPath.
func (m *Member) Start() error {
	logf, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("etcdtest: %w", err)
	}
	m.cmd = exec.Command(m.bin, m.args...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("etcdtest: start %s: %w", m.Name, err)
	}
	m.exited = make(chan struct{})
	go func() {
		_ = m.cmd.Wait()
		logf.Close()
		close(m.exited)
	}()
	return nil
}

// Kill kills the member's process at once, as a crash would.
func (m *Member) Kill() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
}

// Stop kills every member.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		m.Kill()
	}
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.Members))
	for i, m := range c.Members {
		eps[i] = m.ClientURL
	}
	return eps
}

// Client returns a client of the whole cluster; the caller closes it.
func (c *Cluster) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// WaitReady waits until every member that is running answers with a leader.
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration) error {
	cl, err := c.Client()
	if err != nil {
		return err
	}
	defer cl.Close()
	deadline := time.Now().Add(timeout)
	for {
		var notReady error
		for _, m := range c.Members {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := cl.Status(sctx, m.ClientURL)
			cancel()
			if err == nil && st.Leader == 0 {
				err = errors.New("no leader")
			}
			if err != nil {
				notReady = fmt.Errorf("member %s: %w", m.Name, err)
				break
			}
		}
		if notReady == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcdtest: cluster not ready after %s: %w", timeout, notReady)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Fill overwrites a few keys with large values until etcd refuses the write with
// "mvcc: database space exceeded" and raises NOSPACE, as a cluster without compaction does.
// The live data stays small: only the history grows.
func Fill(ctx context.Context, kv clientv3.KV) (writes int, err error) {
	value := strings.Repeat("x", 200<<10)
	for writes = 0; writes < 10000; writes++ {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := kv.Put(pctx, fmt.Sprintf("fill/%d", writes%4), value)
		cancel()
		if errors.Is(rpctypes.Error(err), rpctypes.ErrNoSpace) {
			return writes, nil
		}
		if err != nil {
			return writes, fmt.Errorf("etcdtest: fill: write %d: %w", writes, err)
		}
	}
	return writes, errors.New("etcdtest: fill: 10000 writes and still no NOSPACE")
}

// Log returns the member's log so far.
func (m *Member) Log() string {
	b, _ := os.ReadFile(m.LogPath)
	return string(b)
}

// LogLines returns the times of the member's log lines whose message is msg, such as
// "finished defragment" (which every version since 3.4 logs when a defragmentation RPC ends).
func (m *Member) LogLines(msg string) ([]time.Time, error) {
	f, err := os.Open(m.LogPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			TS  string `json:"ts"`
			Msg string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != msg {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, line.TS)
		if err != nil {
			return nil, fmt.Errorf("etcdtest: %s: time %q: %w", m.Name, line.TS, err)
		}
		out = append(out, ts)
	}
	return out, sc.Err()
}
