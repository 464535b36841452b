// Package natstest runs real nats-server clusters for failover tests: the official server, built
// from the tools/nats-server module at its pinned version and cached between runs, started as one
// process per node on free loopback ports, so that a node can be killed as a crash would and
// restarted on its own store.
package natstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/remediator/remediator/internal/testproc"
)

// readyTimeout bounds how long Start and Restart wait for the cluster: a meta leader is elected
// in a few seconds on loopback, so a cluster that is not ready by then will not become so.
const readyTimeout = 30 * time.Second

// Binary returns the nats-server binary: $REMEDIATOR_NATS_SERVER_BIN if set (the Makefile sets
// it), or else one built from tools/nats-server into the user cache, keyed by that module's files
// and the Go version, so that `go test` alone works too.
func Binary() (string, error) {
	if bin := os.Getenv("REMEDIATOR_NATS_SERVER_BIN"); bin != "" {
		return bin, nil
	}
	return build()
}

// build builds tools/nats-server: a change of the pinned server version rebuilds it.
func build() (string, error) {
	bin, err := testproc.Build("nats-server", ".", "nats-server", "main.go")
	if err != nil {
		return "", fmt.Errorf("natstest: %w", err)
	}
	return bin, nil
}

// Options describe a cluster to start.
type Options struct {
	// Nodes is how many nodes to start (3 if zero), the smallest cluster that survives a loss.
	Nodes int
	// Accounts is nats-server configuration, such as queue.WriteServerConfig's conf output,
	// included by every node so that the cluster authenticates as a production one would; empty
	// means no auth (the global account, JetStream on).
	Accounts string
}

// node is one nats-server process, with what it takes to start it again.
type node struct {
	name    string
	conf    string
	logPath string
	monitor string
	cmd     *exec.Cmd
	exited  chan struct{}
	killed  bool
}

// Cluster is a running cluster of nats-server processes with JetStream, clustered over loopback;
// node i has server name n<i>, the name stream and meta leaders are reported by.
type Cluster struct {
	// URLs are the nodes' client URLs (nats://127.0.0.1:port), node i at index i.
	URLs []string

	t     testing.TB
	bin   string
	nodes []*node
	http  *http.Client
}

// Start starts a cluster for the test, waits until every node has JetStream on and follows one
// meta leader (so that an R3 stream can be created at once), and kills it when the test ends; if
// the test failed, the tail of each node's log goes to the test log.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	n := opts.Nodes
	if n == 0 {
		n = 3
	}
	if n < 1 {
		t.Fatalf("natstest: %d nodes", n)
	}
	dir := t.TempDir()
	ports, err := testproc.FreePorts(3 * n)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Accounts != "" {
		if err := os.WriteFile(filepath.Join(dir, "accounts.conf"), []byte(opts.Accounts), 0o600); err != nil {
			t.Fatalf("natstest: %v", err)
		}
	}
	var routes []string
	for i := range n {
		routes = append(routes, strconv.Quote(fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3*i+1])))
	}
	c := &Cluster{t: t, bin: bin, http: &http.Client{Timeout: time.Second}}
	for i := range n {
		name := fmt.Sprintf("n%d", i)
		m := &node{
			name:    name,
			conf:    filepath.Join(dir, name+".conf"),
			logPath: filepath.Join(dir, name+".log"),
			monitor: fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+2]),
		}
		var conf strings.Builder
		fmt.Fprintf(&conf, "server_name: %s\n", name)
		fmt.Fprintf(&conf, "listen: \"127.0.0.1:%d\"\n", ports[3*i])
		fmt.Fprintf(&conf, "http: \"127.0.0.1:%d\"\n", ports[3*i+2])
		// Small limits, because each node would otherwise claim most of the machine's memory
		// and disk for itself.
		fmt.Fprintf(&conf, "jetstream {\n  store_dir: %s\n  max_memory_store: 256MB\n  max_file_store: 1GB\n}\n",
			strconv.Quote(filepath.Join(dir, name)))
		fmt.Fprintf(&conf, "cluster {\n  name: natstest\n  listen: \"127.0.0.1:%d\"\n  routes: [%s]\n}\n",
			ports[3*i+1], strings.Join(routes, ", "))
		if opts.Accounts != "" {
			// A relative include resolves against this file's folder, where accounts.conf is.
			conf.WriteString("include \"accounts.conf\"\n")
		}
		if err := os.WriteFile(m.conf, []byte(conf.String()), 0o600); err != nil {
			t.Fatalf("natstest: %v", err)
		}
		c.URLs = append(c.URLs, fmt.Sprintf("nats://127.0.0.1:%d", ports[3*i]))
		c.nodes = append(c.nodes, m)
	}
	t.Cleanup(func() {
		for _, m := range c.nodes {
			m.kill()
		}
		if t.Failed() {
			for _, m := range c.nodes {
				b, _ := os.ReadFile(m.logPath)
				t.Logf("nats-server %s log (tail):\n%s", m.name, testproc.Tail(string(b), 20))
			}
		}
	})
	for _, m := range c.nodes {
		if err := c.start(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.waitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	return c
}

// URL returns the client URLs joined by commas, as nats.Connect takes them, so that a client
// fails over to another node when its own dies.
func (c *Cluster) URL() string {
	return strings.Join(c.URLs, ",")
}

// Kill kills node i with SIGKILL, as a crash would (no lame duck mode, no flush), and returns
// once the process has exited, so that the node is gone when the test goes on.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.node(i).kill()
}

// Restart starts node i again on the same config, ports and store, and waits until the
// cluster, that node included, is ready again, as after Start.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.node(i)
	if m.running() {
		c.t.Fatalf("natstest: restart %s: it is running", m.name)
	}
	if err := c.start(m); err != nil {
		c.t.Fatal(err)
	}
	if err := c.waitReady(readyTimeout); err != nil {
		c.t.Fatal(err)
	}
}

func (c *Cluster) node(i int) *node {
	if i < 0 || i >= len(c.nodes) {
		c.t.Fatalf("natstest: no node %d of %d", i, len(c.nodes))
	}
	return c.nodes[i]
}

// start starts the node's process, its stdout and stderr appended to its log file so that a
// restarted node's log follows the first run's.
func (c *Cluster) start(m *node) error {
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("natstest: %w", err)
	}
	m.cmd = exec.Command(c.bin, "-c", m.conf)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("natstest: start %s: %w", m.name, err)
	}
	m.exited = make(chan struct{})
	m.killed = false
	go func() {
		_ = m.cmd.Wait()
		logf.Close()
		close(m.exited)
	}()
	return nil
}

func (m *node) running() bool {
	if m.exited == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

func (m *node) kill() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	m.killed = true
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
}

// waitReady waits until every running node has JetStream on and is current with one meta
// leader, and that leader sees every running node as a current peer: only then does an R3
// stream find its three peers.
func (c *Cluster) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := c.ready()
		if err == nil {
			return nil
		}
		if errors.As(err, new(errExited)) {
			return fmt.Errorf("natstest: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natstest: cluster not ready after %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// errExited is a node that exited by itself.
type errExited struct{ error }

func (c *Cluster) ready() error {
	var running []*node
	for _, m := range c.nodes {
		if m.running() {
			running = append(running, m)
		} else if m.exited != nil && !m.killed {
			// A node that exited by itself, unkilled, refused its config: waiting is pointless.
			b, _ := os.ReadFile(m.logPath)
			return errExited{fmt.Errorf("%s exited (%s):\n%s", m.name, m.cmd.ProcessState, testproc.Tail(string(b), 5))}
		}
	}
	if len(running) == 0 {
		return errors.New("no node is running")
	}
	for _, m := range running {
		if err := c.healthz(m, "?js-enabled-only=true"); err != nil {
			return err
		}
	}
	for _, m := range running {
		if err := c.healthz(m, ""); err != nil {
			return err
		}
	}
	var leader string
	byName := map[string]*node{}
	for _, m := range running {
		byName[m.name] = m
		jsz, err := c.jsz(m)
		if err != nil {
			return err
		}
		if jsz.Meta == nil || jsz.Meta.Leader == "" {
			return fmt.Errorf("%s: no meta leader", m.name)
		}
		if leader != "" && jsz.Meta.Leader != leader {
			return fmt.Errorf("%s follows meta leader %s, another node %s", m.name, jsz.Meta.Leader, leader)
		}
		leader = jsz.Meta.Leader
	}
	lm, ok := byName[leader]
	if !ok {
		return fmt.Errorf("meta leader %s is not a running node", leader)
	}
	jsz, err := c.jsz(lm)
	if err != nil {
		return err
	}
	current := 0
	for _, p := range jsz.Meta.Replicas {
		if p.Current && !p.Offline && byName[p.Name] != nil {
			current++
		}
	}
	if current < len(running)-1 {
		return fmt.Errorf("meta leader %s sees %d current peers of %d", leader, current, len(running)-1)
	}
	return nil
}

// healthz asks node m's /healthz, whose 200 means what the query asks is healthy.
func (c *Cluster) healthz(m *node, query string) error {
	body, status, err := c.get(m, "/healthz"+query)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("%s /healthz%s: %d %s", m.name, query, status, bytes.TrimSpace(body))
	}
	return nil
}

// jsz is the part of /jsz that tells the meta group's state.
type jsz struct {
	Meta *struct {
		Leader   string `json:"leader"`
		Replicas []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
			Offline bool   `json:"offline"`
		} `json:"replicas"`
	} `json:"meta_cluster"`
}

func (c *Cluster) jsz(m *node) (*jsz, error) {
	body, status, err := c.get(m, "/jsz")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("%s /jsz: %d %s", m.name, status, bytes.TrimSpace(body))
	}
	var v jsz
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("%s /jsz: %w", m.name, err)
	}
	return &v, nil
}

func (c *Cluster) get(m *node, path string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.monitor+path, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", m.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", m.name, path, err)
	}
	return body, resp.StatusCode, nil
}
