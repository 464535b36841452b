package etcdtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/remediator/remediator/internal/testproc"
)

// Version is an etcd minor version that clusters in the field run, and tests start: "3.4" to
// "3.7". The zero value is DefaultVersion.
type Version string

// The versions tests run.
const (
	Version34 Version = "3.4"
	Version35 Version = "3.5"
	Version36 Version = "3.6"
	Version37 Version = "3.7"
)

// DefaultVersion is what a cluster runs whose options name no version.
const DefaultVersion = Version37

// VersionsEnv lists the versions Versions returns, comma-separated ("3.4,3.7"), for a quick
// run; unset, every supported one.
const VersionsEnv = "REMEDIATOR_ETCD_VERSIONS"

// The tools that restore a member from a db file.
const (
	ToolEtcdutl = "etcdutl"
	// ToolEtcdctl restores with ETCDCTL_API=3: etcd 3.4 has no etcdutl.
	ToolEtcdctl = "etcdctl"
)

// release is how one version's binaries are found and run.
type release struct {
	version Version
	// module is the tools module that builds the server and its etcdutl; none for 3.4, which
	// comes from the system's packages.
	module string
	// serverEnv and toolEnv override the server's and the restore tool's paths.
	serverEnv, toolEnv string
	// server and tool are the system's binaries, where there is no module.
	server, tool string
	// restorer is ToolEtcdutl or ToolEtcdctl.
	restorer string
	// flags are what the version needs beyond the flags every version takes.
	flags map[string]string
}

// releases are the supported versions, oldest first.
var releases = []release{
	{version: Version34, serverEnv: "REMEDIATOR_ETCD_3_4_BIN", toolEnv: "REMEDIATOR_ETCDCTL_3_4_BIN",
		server: "/usr/bin/etcd", tool: "/usr/bin/etcdctl", restorer: ToolEtcdctl,
		// 3.4 logs with capnslog unless told otherwise, in lines that are not JSON.
		flags: map[string]string{"logger": "zap"}},
	{version: Version35, module: "etcd-3.5", serverEnv: "REMEDIATOR_ETCD_3_5_BIN", toolEnv: "REMEDIATOR_ETCDUTL_3_5_BIN", restorer: ToolEtcdutl},
	{version: Version36, module: "etcd-3.6", serverEnv: "REMEDIATOR_ETCD_3_6_BIN", toolEnv: "REMEDIATOR_ETCDUTL_3_6_BIN", restorer: ToolEtcdutl},
	{version: Version37, module: "etcd", serverEnv: "REMEDIATOR_ETCD_BIN", toolEnv: "REMEDIATOR_ETCDUTL_BIN", restorer: ToolEtcdutl},
}

func known() string {
	var names []string
	for _, r := range releases {
		names = append(names, string(r.version))
	}
	return strings.Join(names, ", ")
}

// release finds the version's release; an unknown version is a programming error in a test.
func (v Version) release() (release, error) {
	if v == "" {
		v = DefaultVersion
	}
	i := slices.IndexFunc(releases, func(r release) bool { return r.version == v })
	if i < 0 {
		return release{}, fmt.Errorf("etcdtest: unknown etcd version %q (known: %s)", v, known())
	}
	return releases[i], nil
}

// String is the version, DefaultVersion's for the zero value.
func (v Version) String() string {
	if v == "" {
		return string(DefaultVersion)
	}
	return string(v)
}

// Binary returns the version's etcd server: its $REMEDIATOR_ETCD_<version>_BIN if set
// ($REMEDIATOR_ETCD_BIN for 3.7), or else one built from its tools module into the user
// cache, or for 3.4 Debian's /usr/bin/etcd.
func (v Version) Binary() (string, error) {
	r, err := v.release()
	if err != nil {
		return "", err
	}
	return r.find(r.serverEnv, r.server, "etcd", ".")
}

// Restorer is the tool that restores a member of one version from a db file, as an operator
// of that version would: etcdutl from 3.5 on, etcdctl before.
type Restorer struct {
	// Tool is ToolEtcdutl or ToolEtcdctl.
	Tool string
	// Path is its binary.
	Path string
}

// Restorer returns the version's restore tool: its $REMEDIATOR_ETCDUTL_<version>_BIN if set
// ($REMEDIATOR_ETCDUTL_BIN for 3.7, $REMEDIATOR_ETCDCTL_3_4_BIN for 3.4), or else the etcdutl
// built next to its server, or for 3.4 Debian's /usr/bin/etcdctl.
func (v Version) Restorer() (Restorer, error) {
	r, err := v.release()
	if err != nil {
		return Restorer{}, err
	}
	path, err := r.find(r.toolEnv, r.tool, "etcdutl", "./etcdutl")
	return Restorer{Tool: r.restorer, Path: path}, err
}

// flags are the flags the version's members need beyond the common ones.
func (v Version) flags() map[string]string {
	r, _ := v.release()
	return r.flags
}

// find is a binary of the release: from env, the system's path, or built as name from pkg.
func (r release) find(env, system, name, pkg string) (string, error) {
	if bin := os.Getenv(env); bin != "" {
		return bin, nil
	}
	if r.module != "" {
		return build(r.module, name, pkg)
	}
	if _, err := os.Stat(system); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("etcdtest: etcd %s: %s is missing: apt-get install etcd-server etcd-client (Debian's etcd %s), or set $%s", r.version, system, r.version, env)
		}
		return "", fmt.Errorf("etcdtest: etcd %s: %w", r.version, err)
	}
	return system, nil
}

// build builds a main package of a tools module of etcd (tools/etcd, tools/etcd-3.5, ...): a
// change to either binary's source or to the module's versions rebuilds both.
func build(module, name, pkg string) (string, error) {
	bin, err := testproc.Build(module, pkg, name, "main.go", filepath.Join("etcdutl", "main.go"))
	if err != nil {
		return "", fmt.Errorf("etcdtest: %w", err)
	}
	return bin, nil
}

var releaseOf sync.Map // server binary -> its "etcd Version:" line's version

// patch is the release the version's server is, such as 3.5.36, as it says itself.
func (v Version) patch() (string, error) {
	bin, err := v.Binary()
	if err != nil {
		return "", err
	}
	if p, ok := releaseOf.Load(bin); ok {
		return p.(string), nil
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("etcdtest: %s --version: %w", bin, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if p, ok := strings.CutPrefix(line, "etcd Version: "); ok {
			p = strings.TrimSpace(p)
			if !strings.HasPrefix(p, v.String()+".") {
				return "", fmt.Errorf("etcdtest: %s is etcd %s, not %s", bin, p, v)
			}
			releaseOf.Store(bin, p)
			return p, nil
		}
	}
	return "", fmt.Errorf("etcdtest: %s --version says no version: %s", bin, out)
}

// Versions are the etcd versions tests run on: those $REMEDIATOR_ETCD_VERSIONS names, or
// every supported one, oldest first.
func Versions() ([]Version, error) {
	env, ok := os.LookupEnv(VersionsEnv)
	if !ok || strings.TrimSpace(env) == "" {
		var all []Version
		for _, r := range releases {
			all = append(all, r.version)
		}
		return all, nil
	}
	want := map[Version]bool{}
	for _, name := range strings.Split(env, ",") {
		v := Version(strings.TrimSpace(name))
		if v == "" {
			continue
		}
		if _, err := v.release(); err != nil {
			return nil, fmt.Errorf("etcdtest: $%s=%q: %q is no etcd version tests run (known: %s)", VersionsEnv, env, v, known())
		}
		want[v] = true
	}
	var out []Version
	for _, r := range releases {
		if want[r.version] {
			out = append(out, r.version)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("etcdtest: $%s=%q names no version (known: %s)", VersionsEnv, env, known())
	}
	return out, nil
}

// EachVersion runs fn as a subtest per version of Versions, named etcd-3.4 and so on, oldest
// first.
func EachVersion(t *testing.T, fn func(t *testing.T, v Version)) {
	t.Helper()
	vs, err := Versions()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Run("etcd-"+string(v), func(t *testing.T) { fn(t, v) })
	}
}
