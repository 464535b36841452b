package etcdtest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/remediator/remediator/internal/manifest"
	"github.com/remediator/remediator/internal/testproc"
)

// probeScale turns a manifest's probe seconds into test time: a period of 10s becomes 1s.
const probeScale = 10

// Kubelet runs the etcd and kube-apiserver static pods of one node's manifests folder the way
// the kubelet does: a manifest that appears is started, one that goes away is stopped, one that
// changes is restarted, a process that dies is started again after a back-off, and an HTTP
// liveness probe that keeps failing kills the process (seconds in the manifest are tenths of
// seconds here). Dot-files are ignored, every other file is a pod.
type Kubelet struct {
	dir     string
	bin     string
	logPath string
	mu      sync.Mutex
	pods    map[string]*pod
	stop    context.CancelFunc
	done    chan struct{}
}

type pod struct {
	data    []byte
	cancel  context.CancelFunc
	done    chan struct{}
	restart int
	// passed counts the liveness probes passed in a row by the running container.
	passed int
	// pid is the running container's process, 0 between runs; atomic, since the kubelet's
	// lock is held while a pod is stopped.
	pid atomic.Int64
}

// StartKubelet starts a kubelet over manifestsDir that runs etcd's pods with the etcd server
// bin (a Version's Binary); every pod logs to logPath.
func StartKubelet(bin, manifestsDir, logPath string) *Kubelet {
	ctx, cancel := context.WithCancel(context.Background())
	k := &Kubelet{dir: manifestsDir, bin: bin, logPath: logPath, pods: map[string]*pod{}, stop: cancel, done: make(chan struct{})}
	go k.loop(ctx)
	return k
}

// Stop stops the kubelet and every pod it runs.
func (k *Kubelet) Stop() {
	k.stop()
	<-k.done
}

// Restarts says how many times the pod of the named manifest was started.
func (k *Kubelet) Restarts(name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p, ok := k.pods[name]; ok {
		return p.restart
	}
	return 0
}

// ProbesPassed says how many liveness probes in a row the running container of the named
// manifest has passed: a probe that fails resets it, and failureThreshold failures kill the
// container.
func (k *Kubelet) ProbesPassed(name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p, ok := k.pods[name]; ok {
		return p.passed
	}
	return 0
}

// Pid is the process of the named manifest's running container, 0 if none runs.
func (k *Kubelet) Pid(name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p, ok := k.pods[name]; ok {
		return int(p.pid.Load())
	}
	return 0
}

func (k *Kubelet) loop(ctx context.Context) {
	defer close(k.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		k.sync(ctx)
		select {
		case <-ctx.Done():
			k.mu.Lock()
			for name, p := range k.pods {
				p.cancel()
				<-p.done
				delete(k.pods, name)
			}
			k.mu.Unlock()
			return
		case <-tick.C:
		}
	}
}

func (k *Kubelet) sync(ctx context.Context) {
	entries, _ := os.ReadDir(k.dir)
	want := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if data, err := os.ReadFile(filepath.Join(k.dir, e.Name())); err == nil {
			want[e.Name()] = data
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for name, p := range k.pods {
		if data, ok := want[name]; !ok || !bytes.Equal(data, p.data) {
			p.cancel()
			<-p.done
			delete(k.pods, name)
		}
	}
	for name, data := range want {
		if _, ok := k.pods[name]; ok {
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		p := &pod{data: data, cancel: cancel, done: make(chan struct{})}
		k.pods[name] = p
		go k.run(pctx, name, p)
	}
}

// run keeps one pod's container running until its context ends.
func (k *Kubelet) run(ctx context.Context, name string, p *pod) {
	defer close(p.done)
	spec, err := manifest.ParsePod(p.data)
	if err != nil {
		k.logf("kubelet: %s: %v", name, err)
		return
	}
	args := spec.Command()
	bin, probe := k.bin, livenessOf(p.data)
	switch {
	case len(args) > 0 && args[0] == "etcd":
	case len(args) > 0 && args[0] == "kube-apiserver":
		if bin, err = APIServerBinary(); err != nil {
			k.logf("kubelet: %s: %v", name, err)
			return
		}
		// It runs unprobed: its probes' /livez waits for etcd's check, up to
		// --etcd-healthcheck-timeout in real seconds, which a probe in tenths would cut short.
		probe = nil
	default:
		return // only etcd and kube-apiserver run here; other pods are the tests' to play
	}
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		k.mu.Lock()
		p.restart++
		p.passed = 0
		k.mu.Unlock()
		k.runOnce(ctx, name, p, bin, args[1:], probe, func(ok bool) {
			k.mu.Lock()
			defer k.mu.Unlock()
			if ok {
				p.passed++
			} else {
				p.passed = 0
			}
		})
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

func (k *Kubelet) runOnce(ctx context.Context, name string, p *pod, bin string, args []string, probe *liveness, probed func(ok bool)) {
	logf, err := os.OpenFile(k.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		k.logf("kubelet: %s: %v", name, err)
		return
	}
	p.pid.Store(int64(cmd.Process.Pid))
	defer p.pid.Store(0)
	k.logf("kubelet: %s: started process %d: %s", name, cmd.Process.Pid, strings.Join(args, " "))
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	probeFailed := probe.watch(ctx, exited, probed)
	select {
	case <-exited:
		k.logf("kubelet: %s: container exited", name)
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-exited
	case <-probeFailed:
		k.logf("kubelet: %s: liveness probe failed, killing the container", name)
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (k *Kubelet) logf(format string, args ...any) {
	f, err := os.OpenFile(k.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, `{"level":"info","ts":%q,"msg":%q}`+"\n", time.Now().UTC().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
}

// liveness is an HTTP liveness probe.
type liveness struct {
	url       string
	delay     time.Duration
	period    time.Duration
	threshold int
}

func livenessOf(data []byte) *liveness {
	var pod struct {
		Spec struct {
			Containers []struct {
				LivenessProbe *struct {
					HTTPGet *struct {
						Host string `yaml:"host"`
						Path string `yaml:"path"`
						Port int    `yaml:"port"`
					} `yaml:"httpGet"`
					InitialDelaySeconds int `yaml:"initialDelaySeconds"`
					PeriodSeconds       int `yaml:"periodSeconds"`
					FailureThreshold    int `yaml:"failureThreshold"`
				} `yaml:"livenessProbe"`
			} `yaml:"containers"`
		} `yaml:"spec"`
	}
	if yaml.Unmarshal(data, &pod) != nil || len(pod.Spec.Containers) == 0 {
		return nil
	}
	lp := pod.Spec.Containers[0].LivenessProbe
	if lp == nil || lp.HTTPGet == nil {
		return nil
	}
	l := &liveness{
		url:       fmt.Sprintf("http://%s:%d%s", lp.HTTPGet.Host, lp.HTTPGet.Port, lp.HTTPGet.Path),
		delay:     time.Duration(lp.InitialDelaySeconds) * time.Second / probeScale,
		period:    time.Duration(max(lp.PeriodSeconds, 10)) * time.Second / probeScale,
		threshold: max(lp.FailureThreshold, 3),
	}
	return l
}

// watch probes until the container exits, telling probed each result, and reports when the
// probe has failed threshold times in a row.
func (l *liveness) watch(ctx context.Context, exited <-chan struct{}, probed func(ok bool)) <-chan struct{} {
	failed := make(chan struct{})
	if l == nil {
		return failed
	}
	go func() {
		select {
		case <-time.After(l.delay):
		case <-exited:
			return
		case <-ctx.Done():
			return
		}
		fails := 0
		client := &http.Client{Timeout: l.period}
		for {
			resp, err := client.Get(l.url)
			if err == nil {
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode >= 400 {
				fails++
				probed(false)
			} else {
				fails = 0
				probed(true)
			}
			if fails >= l.threshold {
				close(failed)
				return
			}
			select {
			case <-time.After(l.period):
			case <-exited:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return failed
}

// StaticOptions describe a cluster of etcd static pods to start.
type StaticOptions struct {
	// Members is how many nodes, each with one member (1 if zero).
	Members int
	// Template is the etcd manifest every node's is made from, such as
	// testdata/manifests/etcd.yaml: its addresses, paths and TLS flags are replaced.
	Template string
	// QuotaBytes is --quota-backend-bytes (etcd's default if zero).
	QuotaBytes int64
	// Flags are more flags for every member.
	Flags map[string]string
	Dir   string
	// Version is the etcd the members run (DefaultVersion if zero); the manifests' image tag
	// says which release it is, as kubeadm's does.
	Version Version
}

// Node is one control-plane node of a static cluster: its folders, its member's URLs, and the
// kubelet that runs what its manifests folder holds.
type Node struct {
	Name         string
	ManifestsDir string
	StoppedDir   string
	BackupDir    string
	DataDir      string
	ClientURL    string
	PeerURL      string
	MetricsURL   string
	LogPath      string
	Kubelet      *Kubelet
}

// Manifest is the path of the node's etcd manifest in its manifests folder.
func (n *Node) Manifest() string { return filepath.Join(n.ManifestsDir, "etcd.yaml") }

// Log returns what the node's pods logged so far.
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.LogPath)
	return string(b)
}

// StaticCluster is a cluster whose members run as static pods under test kubelets.
type StaticCluster struct {
	Nodes []*Node
}

// Endpoints are the members' client URLs.
func (c *StaticCluster) Endpoints() []string {
	eps := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		eps[i] = n.ClientURL
	}
	return eps
}

// Cluster views the static cluster as a plain one, for WaitReady and Client.
func (c *StaticCluster) Cluster() *Cluster {
	cl := &Cluster{}
	for _, n := range c.Nodes {
		cl.Members = append(cl.Members, &Member{Name: n.Name, ClientURL: n.ClientURL, PeerURL: n.PeerURL, DataDir: n.DataDir, LogPath: n.LogPath})
	}
	return cl
}

// NewStatic starts a cluster of etcd static pods, one node each, and waits until every member
// answers with a leader; it stops when the test ends.
func NewStatic(t testing.TB, opts StaticOptions) *StaticCluster {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	tmpl, err := os.ReadFile(opts.Template)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := opts.Version.Binary()
	if err != nil {
		t.Fatal(err)
	}
	release, err := opts.Version.patch()
	if err != nil {
		t.Fatal(err)
	}
	n := max(opts.Members, 1)
	ports, err := testproc.FreePorts(3 * n)
	if err != nil {
		t.Fatal(err)
	}
	c := &StaticCluster{}
	var initial []string
	for i := range n {
		name := fmt.Sprintf("cp-%d", i+1)
		dir := filepath.Join(opts.Dir, name)
		node := &Node{
			Name:         name,
			ManifestsDir: filepath.Join(dir, "etc", "kubernetes", "manifests"),
			StoppedDir:   filepath.Join(dir, "etc", "kubernetes", "remediator-stopped"),
			BackupDir:    filepath.Join(dir, "var", "lib", "remediator", "backups"),
			DataDir:      filepath.Join(dir, "var", "lib", "etcd"),
			ClientURL:    fmt.Sprintf("http://127.0.0.1:%d", ports[3*i]),
			PeerURL:      fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+1]),
			MetricsURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+2]),
			LogPath:      filepath.Join(opts.Dir, name+".log"),
		}
		for _, d := range []string{node.ManifestsDir, node.DataDir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		initial = append(initial, name+"="+node.PeerURL)
		c.Nodes = append(c.Nodes, node)
	}
	token := fmt.Sprintf("remediator-static-%d", time.Now().UnixNano())
	for _, node := range c.Nodes {
		pod, err := manifest.ParsePod(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		// etcd 3.7 no longer takes the --experimental- flags that kubeadm's etcd 3.5
		// manifests carry; they go on every version, so that versions differ by their server.
		for name := range pod.Flags() {
			if strings.HasPrefix(name, "experimental-") {
				pod.Remove(name)
			}
		}
		for _, tls := range []string{"cert-file", "key-file", "client-cert-auth", "trusted-ca-file", "peer-cert-file",
			"peer-key-file", "peer-client-cert-auth", "peer-trusted-ca-file"} {
			pod.Remove(tls)
		}
		flags := map[string]string{
			"name":                        node.Name,
			"data-dir":                    node.DataDir,
			"listen-client-urls":          node.ClientURL,
			"advertise-client-urls":       node.ClientURL,
			"listen-peer-urls":            node.PeerURL,
			"initial-advertise-peer-urls": node.PeerURL,
			"initial-cluster":             strings.Join(initial, ","),
			"initial-cluster-state":       "new",
			"initial-cluster-token":       token,
			"listen-metrics-urls":         node.MetricsURL,
			"log-outputs":                 "stderr",
		}
		if opts.QuotaBytes > 0 {
			flags["quota-backend-bytes"] = fmt.Sprint(opts.QuotaBytes)
		}
		maps.Copy(flags, opts.Version.flags())
		for k, v := range opts.Flags {
			flags[k] = v
		}
		for k, v := range flags {
			if _, err := pod.Set(k, v); err != nil {
				t.Fatal(err)
			}
		}
		// The probes ask the metrics URL, which listens on this member's own port.
		port := node.MetricsURL[strings.LastIndex(node.MetricsURL, ":")+1:]
		data := strings.ReplaceAll(string(pod.Bytes()), "port: 2381", "port: "+port)
		if image := pod.Image(); image != "" {
			data = strings.Replace(data, "image: "+image, "image: "+withTag(image, release+"-0"), 1)
		}
		if err := os.WriteFile(node.Manifest(), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		node.Kubelet = StartKubelet(bin, node.ManifestsDir, node.LogPath)
	}
	t.Cleanup(func() {
		for _, node := range c.Nodes {
			node.Kubelet.Stop()
			if t.Failed() {
				t.Logf("node %s log (tail):\n%s", node.Name, testproc.Tail(node.Log(), 12))
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Cluster().WaitReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	return c
}

// withTag is the image with its tag replaced, as kubeadm tags etcd's: registry.k8s.io/etcd:3.5.12-0.
func withTag(image, tag string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image + ":" + tag
}
