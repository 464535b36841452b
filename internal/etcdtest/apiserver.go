package etcdtest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator/internal/manifest"
	"github.com/remediator/remediator/internal/poll"
	"github.com/remediator/remediator/internal/testproc"
)

// APIServerBinEnv names the kube-apiserver binary to run instead of building one.
const APIServerBinEnv = "REMEDIATOR_KUBE_APISERVER_BIN"

// APIServerManifest is the name of kube-apiserver's manifest in a node's manifests folder, as
// kubeadm names it, and of its pod in the node's Kubelet.
const APIServerManifest = "kube-apiserver.yaml"

// apiserverStart bounds how long kube-apiserver may take to be ready the first time: a few
// seconds alone, longer on two busy cores.
const apiserverStart = time.Minute

// readyzTimeout bounds one /readyz request, as kubeadm's probes' timeoutSeconds does: the
// answer waits for the etcd checks, each up to its timeout.
const readyzTimeout = 15 * time.Second

// APIServerBinary returns the official kube-apiserver: $REMEDIATOR_KUBE_APISERVER_BIN if set, or
// else one built from tools/kube-apiserver (k8s.io/kubernetes at its pinned version) into the
// user cache, keyed by that module's files and the Go version. The first build takes minutes.
func APIServerBinary() (string, error) {
	if bin := os.Getenv(APIServerBinEnv); bin != "" {
		return bin, nil
	}
	bin, err := testproc.Build("kube-apiserver", ".", "kube-apiserver", "main.go")
	if err != nil {
		return "", fmt.Errorf("etcdtest: %w", err)
	}
	return bin, nil
}

// APIServerRelease is the Kubernetes release tools/kube-apiserver builds, such as v1.37.2, as
// its go.mod pins it: a binary built there says v0.0.0-master, having no release's ldflags.
func APIServerRelease() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	gomod := filepath.Join(filepath.Dir(file), "..", "..", "tools", "kube-apiserver", "go.mod")
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "", fmt.Errorf("etcdtest: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(f) >= 2 && f[0] == "k8s.io/kubernetes" {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("etcdtest: %s requires no k8s.io/kubernetes", gomod)
}

// APIServerOptions describe a kube-apiserver to run as a static pod.
type APIServerOptions struct {
	// Template is the kube-apiserver manifest the pod's is made from, such as kubeadm's
	// testdata/manifests/kube-apiserver.yaml: its addresses, ports, key and certificate files
	// are replaced, and its image tag says the release that runs.
	Template string
	// EtcdServers are the etcd client URLs it stores in (--etcd-servers), plain HTTP.
	EtcdServers []string
	// Flags are more flags, set as the node's operator had them (such as
	// etcd-healthcheck-timeout).
	Flags map[string]string
	// Dir holds the node's files: its keys and serving certificate, and its pods' log (a
	// temporary folder if empty).
	Dir string
	// ManifestsDir is the node's manifests folder (Dir/manifests if empty); the manifest is
	// APIServerManifest there.
	ManifestsDir string
}

// APIServer is a kube-apiserver run as a static pod by a test kubelet, serving on loopback.
type APIServer struct {
	// Manifest is the pod's manifest: edit it, and the kubelet restarts kube-apiserver.
	Manifest string
	// URL is where it serves: https://127.0.0.1:<--secure-port>, with a self-signed
	// certificate.
	URL     string
	LogPath string
	Kubelet *Kubelet
	client  *http.Client
}

// NewAPIServer writes kube-apiserver's manifest into a manifests folder, starts a kubelet over
// it, and waits until kube-apiserver answers /readyz with 200; the kubelet stops when the test
// ends, and if the test failed the tail of the log goes to the test log.
//
// The manifest keeps kubeadm's flags but those that name files a node has and the test has
// not (client CA, front proxy, kubelet client, etcd's TLS), and points the rest at the test:
// --etcd-servers, --secure-port on a free loopback port, --bind-address and
// --advertise-address 127.0.0.1 (with --endpoint-reconciler-type=none, since kube-apiserver
// refuses to advertise a loopback address in the kubernetes service's endpoints), a generated
// service account key pair, and --cert-dir for a self-signed serving certificate. Under
// kubeadm's --authorization-mode=Node,RBAC anonymous requests are allowed, and
// system:public-info-viewer lets them read /readyz?verbose.
func NewAPIServer(t testing.TB, opts APIServerOptions) *APIServer {
	t.Helper()
	if _, err := APIServerBinary(); err != nil { // the kubelet finds it in the cache
		t.Fatal(err)
	}
	etcdBin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	release, err := APIServerRelease()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(opts.Template)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.ManifestsDir == "" {
		opts.ManifestsDir = filepath.Join(opts.Dir, "manifests")
	}
	pki := filepath.Join(opts.Dir, "pki")
	for _, d := range []string{opts.ManifestsDir, pki} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	pub, key, err := serviceAccountKeys(pki)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := testproc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(ports[0])
	pod, err := manifest.ParsePod(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	was := pod.Flags()
	for _, f := range []string{"client-ca-file", "etcd-cafile", "etcd-certfile", "etcd-keyfile",
		"kubelet-client-certificate", "kubelet-client-key", "proxy-client-cert-file", "proxy-client-key-file",
		"requestheader-allowed-names", "requestheader-client-ca-file", "requestheader-extra-headers-prefix",
		"requestheader-group-headers", "requestheader-username-headers", "tls-cert-file", "tls-private-key-file"} {
		pod.Remove(f)
	}
	flags := map[string]string{
		"advertise-address":                "127.0.0.1",
		"bind-address":                     "127.0.0.1",
		"endpoint-reconciler-type":         "none",
		"secure-port":                      port,
		"etcd-servers":                     strings.Join(opts.EtcdServers, ","),
		"service-account-key-file":         pub,
		"service-account-signing-key-file": key,
		"cert-dir":                         filepath.Join(opts.Dir, "certs"),
	}
	for k, v := range opts.Flags {
		flags[k] = v
	}
	for k, v := range flags {
		if _, err := pod.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	// The probes and kubeadm's endpoint annotation name the node's address and port.
	data := string(pod.Bytes())
	if addr, oldPort := was["advertise-address"], cmp.Or(was["secure-port"], "6443"); addr != "" {
		data = strings.ReplaceAll(data, addr+":"+oldPort, "127.0.0.1:"+port)
		data = strings.ReplaceAll(data, "host: "+addr, "host: 127.0.0.1")
	}
	data = strings.ReplaceAll(data, "port: "+cmp.Or(was["secure-port"], "6443"), "port: "+port)
	if image := pod.Image(); image != "" {
		data = strings.Replace(data, "image: "+image, "image: "+withTag(image, release), 1)
	}
	a := &APIServer{
		Manifest: filepath.Join(opts.ManifestsDir, APIServerManifest),
		URL:      "https://127.0.0.1:" + port,
		LogPath:  filepath.Join(opts.Dir, "kubelet.log"),
		client:   &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}},
	}
	if err := os.WriteFile(a.Manifest, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	a.Kubelet = StartKubelet(etcdBin, opts.ManifestsDir, a.LogPath)
	t.Cleanup(func() {
		a.Kubelet.Stop()
		a.client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("kube-apiserver at %s, log (tail):\n%s", a.URL, testproc.Tail(a.Log(), 20))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), apiserverStart)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}

// serviceAccountKeys writes the key pair kube-apiserver signs and checks service account
// tokens with, as kubeadm's sa.key and sa.pub, and returns their paths.
func serviceAccountKeys(dir string) (pub, key string, err error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", fmt.Errorf("etcdtest: service account key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return "", "", fmt.Errorf("etcdtest: service account key: %w", err)
	}
	pub, key = filepath.Join(dir, "sa.pub"), filepath.Join(dir, "sa.key")
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600); err != nil {
		return "", "", fmt.Errorf("etcdtest: %w", err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return "", "", fmt.Errorf("etcdtest: %w", err)
	}
	return pub, key, nil
}

// Readyz asks /readyz?verbose, as kubeadm's readiness probe and the node agent do, and returns
// the answer's body and status.
func (a *APIServer) Readyz(ctx context.Context) (body string, status int, err error) {
	ctx, cancel := context.WithTimeout(ctx, readyzTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+"/readyz?verbose", nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return string(b), resp.StatusCode, err
}

// WaitReady waits until /readyz answers 200.
func (a *APIServer) WaitReady(ctx context.Context) error {
	var last string
	err := poll.Until(ctx, 0, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		body, status, err := a.Readyz(ctx)
		last = fmt.Sprintf("status %d, %v:\n%s", status, err, body)
		return err == nil && status == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("etcdtest: kube-apiserver at %s not ready: %w; last answer: %s", a.URL, err, last)
	}
	return nil
}

// Pid is the running kube-apiserver's process (0 between runs): a new one after each change
// to its manifest.
func (a *APIServer) Pid() int { return a.Kubelet.Pid(APIServerManifest) }

// APIServerStart is one start of kube-apiserver by the kubelet.
type APIServerStart struct {
	Pid int
	// Args are its flags, as the manifest had them then.
	Args []string
}

// Starts lists every start of kube-apiserver so far, oldest first, as the kubelet logged them:
// one more after each change to its manifest.
func (a *APIServer) Starts() ([]APIServerStart, error) {
	f, err := os.Open(a.LogPath)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: %w", err)
	}
	defer f.Close()
	prefix := "kubelet: " + APIServerManifest + ": started process "
	var out []APIServerStart
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || !strings.HasPrefix(line.Msg, prefix) {
			continue // kube-apiserver's own lines, or another pod's
		}
		pid, args, _ := strings.Cut(strings.TrimPrefix(line.Msg, prefix), ": ")
		s := APIServerStart{Args: strings.Fields(args)}
		if s.Pid, err = strconv.Atoi(pid); err != nil {
			return nil, fmt.Errorf("etcdtest: kubelet log: %q: %w", line.Msg, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// Args is the running kube-apiserver's command line, as its process has it.
func (a *APIServer) Args() ([]string, error) {
	pid := a.Pid()
	if pid == 0 {
		return nil, fmt.Errorf("etcdtest: kube-apiserver is not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, fmt.Errorf("etcdtest: kube-apiserver: %w", err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}

// Log returns what kube-apiserver and its kubelet logged so far.
func (a *APIServer) Log() string {
	b, _ := os.ReadFile(a.LogPath)
	return string(b)
}
