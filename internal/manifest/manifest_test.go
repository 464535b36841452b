package manifest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readPod(t *testing.T, name string) ([]byte, *Pod) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "manifests", name))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePod(b)
	if err != nil {
		t.Fatal(err)
	}
	return b, p
}

// changed lists the lines of b that a does not have, and the lines of a that b does not have.
func changed(a, b []byte) (removed, added []string) {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for _, l := range al {
		if !slices.Contains(bl, l) {
			removed = append(removed, l)
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			added = append(added, l)
		}
	}
	return removed, added
}

func TestSetFlagChangesOnlyItsLine(t *testing.T) {
	orig, p := readPod(t, "kube-apiserver.yaml")
	if _, ok := p.Flags()["etcd-healthcheck-timeout"]; ok {
		t.Fatal("testdata already sets --etcd-healthcheck-timeout")
	}
	if ch, err := p.Set("etcd-healthcheck-timeout", "4s"); err != nil || !ch {
		t.Fatalf("Set = %v, %v", ch, err)
	}
	added := p.Bytes()
	removed, lines := changed(orig, added)
	if len(removed) != 0 || !slices.Equal(lines, []string{"    - --etcd-healthcheck-timeout=4s"}) {
		t.Fatalf("removed %q, added %q", removed, lines)
	}
	// kubeadm's alphabetical order: right after --etcd-certfile.
	if !strings.Contains(string(added), "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt\n    - --etcd-healthcheck-timeout=4s\n    - --etcd-keyfile") {
		t.Fatalf("flag not in alphabetical place:\n%s", added)
	}
	// Changing it again replaces that one line; setting the same value changes nothing.
	if ch, err := p.Set("etcd-healthcheck-timeout", "8s"); err != nil || !ch {
		t.Fatalf("Set again = %v, %v", ch, err)
	}
	if ch, err := p.Set("etcd-healthcheck-timeout", "8s"); err != nil || ch {
		t.Fatalf("Set same = %v, %v", ch, err)
	}
	if got := p.Flags()["etcd-healthcheck-timeout"]; got != "8s" {
		t.Fatalf("flag = %q", got)
	}
	if !p.Remove("etcd-healthcheck-timeout") || string(p.Bytes()) != string(orig) {
		t.Fatalf("removing the flag did not give back the original file")
	}
}

func TestBareFlagAndLastPlace(t *testing.T) {
	orig, p := readPod(t, "etcd.yaml")
	if _, err := p.Set("force-new-cluster", ""); err != nil {
		t.Fatal(err)
	}
	if v, ok := p.Flags()["force-new-cluster"]; !ok || v != "" {
		t.Fatalf("force-new-cluster = %q, %v", v, ok)
	}
	if !strings.Contains(string(p.Bytes()), "    - --experimental-watch-progress-notify-interval=5s\n    - --force-new-cluster\n    - --initial-advertise-peer-urls") {
		t.Fatalf("bare flag not in place:\n%s", p.Bytes())
	}
	if _, err := p.Set("zz-last", "a b: c"); err != nil {
		t.Fatal(err)
	}
	if got := p.Flags()["zz-last"]; got != "a b: c" {
		t.Fatalf("quoted value reads %q", got)
	}
	p.Remove("zz-last")
	p.Remove("force-new-cluster")
	if string(p.Bytes()) != string(orig) {
		t.Fatal("edits did not round-trip")
	}
}

func TestProbe(t *testing.T) {
	tests := []struct {
		file   string
		target string
	}{
		{"etcd-kubeadm-1.13.yaml", "/health"},
		{"etcd.yaml", "/health?exclude=NOSPACE&serializable=true"},
		{"kube-apiserver.yaml", "/livez"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			orig, p := readPod(t, tt.file)
			present, suspended, target := p.Probe()
			if !present || suspended || target != tt.target {
				t.Fatalf("Probe = %v, %v, %q", present, suspended, target)
			}
			if ch, err := p.SuspendProbe(); err != nil || !ch {
				t.Fatalf("SuspendProbe = %v, %v", ch, err)
			}
			present, suspended, target = p.Probe()
			if !present || !suspended || target != tt.target {
				t.Fatalf("after suspending, Probe = %v, %v, %q", present, suspended, target)
			}
			// The kubelet must not see it: it is gone from the parsed YAML.
			if strings.Contains(yamlKeys(t, p.Bytes()), "livenessProbe") {
				t.Fatal("the suspended probe is still in the pod spec")
			}
			if ch, err := p.SuspendProbe(); err != nil || ch {
				t.Fatalf("second SuspendProbe = %v, %v", ch, err)
			}
			// Other probes of the container stay.
			if strings.Contains(string(orig), "startupProbe:") && !strings.Contains(yamlKeys(t, p.Bytes()), "startupProbe") {
				t.Fatal("the startup probe went too")
			}
			if ch, err := p.RestoreProbe(); err != nil || !ch {
				t.Fatalf("RestoreProbe = %v, %v", ch, err)
			}
			if string(p.Bytes()) != string(orig) {
				t.Fatal("suspend and restore did not give back the original file")
			}
		})
	}
}

func yamlKeys(t *testing.T, b []byte) string {
	t.Helper()
	p, err := ParsePod(b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.container()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i := 0; i < len(c.node.Content); i += 2 {
		keys = append(keys, c.node.Content[i].Value)
	}
	return strings.Join(keys, ",")
}

func TestParsePodErrors(t *testing.T) {
	tests := map[string]string{
		"not yaml":      "a: [",
		"no containers": "apiVersion: v1\nkind: Pod\nspec: {}\n",
		"no command":    "spec:\n  containers:\n  - name: etcd\n",
		"block scalar":  "spec:\n  containers:\n  - command:\n    - etcd\n    - |\n      --name=x\n",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParsePod([]byte(in)); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestFlagsFile(t *testing.T) {
	env := "# etcd env, as BOSH writes it\nETCD_NAME=etcd-0\nexport ETCD_INITIAL_CLUSTER_STATE=\"new\"\nETCD_DATA_DIR='/var/vcap/store/etcd'\n"
	f, err := ParseFlagsFile([]byte(env), FormatEnv)
	if err != nil {
		t.Fatal(err)
	}
	flags := f.Flags()
	if flags["name"] != "etcd-0" || flags["initial-cluster-state"] != "new" || flags["data-dir"] != "/var/vcap/store/etcd" {
		t.Fatalf("flags = %v", flags)
	}
	if _, err := f.Set("initial-cluster-state", "existing"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Set("initial-cluster", "etcd-0=https://10.0.0.1:2380,etcd-1=https://10.0.0.2:2380"); err != nil {
		t.Fatal(err)
	}
	want := "# etcd env, as BOSH writes it\nETCD_NAME=etcd-0\nETCD_INITIAL_CLUSTER_STATE=existing\nETCD_DATA_DIR='/var/vcap/store/etcd'\nETCD_INITIAL_CLUSTER=etcd-0=https://10.0.0.1:2380,etcd-1=https://10.0.0.2:2380\n"
	if got := string(f.Bytes()); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	args, err := ParseFlagsFile([]byte("--name=m1\n--data-dir=/var/lib/etcd\n"), FormatArgs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := args.Set("force-new-cluster", ""); err != nil {
		t.Fatal(err)
	}
	if !args.Remove("data-dir") || string(args.Bytes()) != "--name=m1\n--force-new-cluster\n" {
		t.Fatalf("args file = %q", args.Bytes())
	}
	if _, err := ParseFlagsFile(nil, "toml"); err == nil {
		t.Fatal("unknown format accepted")
	}
}

// TestAFlagsFileCannotRunWhatItIsGiven sources what Set writes with a real shell: a value
// that would run a command, expand or split is refused and the file does not change; what it
// takes reads back as it was given.
func TestAFlagsFileCannotRunWhatItIsGiven(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to source the file with")
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	for format, original := range map[Format]string{FormatEnv: "ETCD_NAME=m1\n", FormatArgs: "--name=m1\n"} {
		f, err := ParseFlagsFile([]byte(original), format)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"$(touch " + marker + ")", "`touch " + marker + "`", "x;touch " + marker, "a\ntouch " + marker,
			`a\`, "'x'", `"x"`, "a b", "$HOME", "*", "x&touch " + marker, "x|touch " + marker} {
			if _, err := f.Set("initial-cluster", v); err == nil {
				t.Errorf("%s: Set(initial-cluster, %q) was taken", format, v)
			}
		}
		if got := string(f.Bytes()); got != original {
			t.Errorf("%s: the refused values changed the file:\n%s", format, got)
		}
		want := "m1=https://10.0.0.1:2380,m2=https://10.0.0.2:2380"
		if _, err := f.Set("initial-cluster", want); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, string(format))
		if err := os.WriteFile(path, f.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		// The env file sourced as systemd-less setups and BOSH do; the args file expanded
		// into a command line unquoted, as `etcd $(cat file)` does.
		script := `. "$1"; printf %s "$ETCD_INITIAL_CLUSTER"`
		if format == FormatArgs {
			script = `set -- $(cat "$1"); for a; do case $a in --initial-cluster=*) printf %s "${a#--initial-cluster=}";; esac; done`
		}
		out, err := exec.Command(sh, "-c", script, "sh", path).CombinedOutput()
		if err != nil || string(out) != want {
			t.Errorf("%s: sourced --initial-cluster = %q (%v), want %q", format, out, err, want)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a value ran a command when the file was sourced")
	}
}

func TestImage(t *testing.T) {
	_, p := readPod(t, "etcd.yaml")
	if got := p.Image(); got != "registry.k8s.io/etcd:3.5.12-0" {
		t.Errorf("image %q", got)
	}
	none, err := ParsePod([]byte("spec:\n  containers:\n  - command:\n    - etcd\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := none.Image(); got != "" {
		t.Errorf("image of a container without one: %q", got)
	}
}
