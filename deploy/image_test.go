package deploy

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// ociIndex, ociManifest and ociConfig are the parts of an OCI image layout this test reads.
type (
	ociIndex struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	ociManifest struct {
		Config struct{ Digest string } `json:"config"`
		Layers []struct {
			Digest, MediaType string
		} `json:"layers"`
	}
	ociConfig struct {
		Created string `json:"created"`
		Config  struct {
			User       string            `json:"User"`
			Entrypoint []string          `json:"Entrypoint"`
			Cmd        []string          `json:"Cmd"`
			Env        []string          `json:"Env"`
			WorkingDir string            `json:"WorkingDir"`
			Labels     map[string]string `json:"Labels"`
		} `json:"config"`
	}
)

// imageArchive reads bin/remediator-image.tar (REMEDIATOR_IMAGE, which make exports) into
// its blobs by digest. Without it the test skips, but not in CI, where make test builds it.
func imageArchive(t *testing.T) map[string][]byte {
	t.Helper()
	path := os.Getenv("REMEDIATOR_IMAGE")
	if _, err := os.Stat(path); path == "" || err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no image archive at %q (REMEDIATOR_IMAGE): make test builds it with make image (apt-get install buildah)", path)
		}
		t.Skipf("no image archive at %q: make image builds it (apt-get install buildah)", path)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blobs := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		if d, ok := strings.CutPrefix(name, "blobs/sha256/"); ok {
			name = "sha256:" + d
		}
		blobs[name] = b
	}
	return blobs
}

// decodeBlob decodes the JSON blob of a digest.
func decodeBlob(t *testing.T, blobs map[string][]byte, digest string, v any) {
	t.Helper()
	b, ok := blobs[digest]
	if !ok {
		t.Fatalf("the archive has no blob %s", digest)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("blob %s: %v", digest, err)
	}
}

// layerFiles extracts the regular files of the image's layers into dir and returns their
// paths (as in the image) with their modes.
func layerFiles(t *testing.T, blobs map[string][]byte, m ociManifest, dir string) map[string]os.FileMode {
	t.Helper()
	files := map[string]os.FileMode{}
	for _, l := range m.Layers {
		var r io.Reader = strings.NewReader(string(blobs[l.Digest]))
		if strings.Contains(l.MediaType, "gzip") {
			gz, err := gzip.NewReader(r)
			if err != nil {
				t.Fatalf("layer %s: %v", l.Digest, err)
			}
			r = gz
		}
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", l.Digest, err)
			}
			name := "/" + strings.TrimPrefix(filepath.Clean("/"+h.Name), "/")
			if h.Typeflag == tar.TypeSymlink || h.Typeflag == tar.TypeLink {
				files[name] = os.ModeSymlink
				continue
			}
			if h.Typeflag != tar.TypeReg {
				continue
			}
			files[name] = os.FileMode(h.Mode).Perm()
			out := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(tr)
			if err := os.WriteFile(out, b, os.FileMode(h.Mode).Perm()|0o200); err != nil {
				t.Fatal(err)
			}
		}
	}
	return files
}

// TestImage checks the image archive as a registry would take it and a kubelet would run it:
// the entrypoint, the non-root user, the labels stamped with the build's version and commit,
// no shell, and the binaries in its layers run.
func TestImage(t *testing.T) {
	blobs := imageArchive(t)
	var index ociIndex
	if err := json.Unmarshal(blobs["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v, %d manifests; want one", err, len(index.Manifests))
	}
	var m ociManifest
	decodeBlob(t, blobs, index.Manifests[0].Digest, &m)
	var cfg ociConfig
	decodeBlob(t, blobs, m.Config.Digest, &cfg)
	c := cfg.Config
	if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/remediator"}) || !slices.Equal(c.Cmd, []string{"serve"}) {
		t.Errorf("user %q, entrypoint %q, cmd %q; want 65532:65532, /usr/local/bin/remediator, serve", c.User, c.Entrypoint, c.Cmd)
	}
	if c.WorkingDir != "/" {
		t.Errorf("working dir %q, want /", c.WorkingDir)
	}
	version, commit := c.Labels["org.opencontainers.image.version"], c.Labels["org.opencontainers.image.revision"]
	created := c.Labels["org.opencontainers.image.created"]
	// The labels say which source the image is; an image built from another commit than the
	// checkout's is a stale one, and fails here rather than passing for this commit.
	// Whether the tree was dirty changes while others edit it, so "-dirty" is left out.
	if want := git(t, "rev-parse", "HEAD"); commit != want {
		t.Errorf("label revision %q, the checkout is at %s: make image rebuilds the image", commit, want)
	}
	if want := git(t, "describe", "--tags", "--always"); strings.TrimSuffix(version, "-dirty") != want {
		t.Errorf("label version %q, git describe says %q: make image rebuilds the image", version, want)
	}
	if want := git(t, "log", "-1", "--format=%cI"); created != want {
		t.Errorf("label created %q, want the commit's time %s", created, want)
	}
	// The config's own time is the commit's too, so that the same commit builds the same image.
	if got, err := time.Parse(time.RFC3339, cfg.Created); err != nil || !sameTime(got, created) {
		t.Errorf("config created %q (%v), want the commit's time %s", cfg.Created, err, created)
	}
	for key, want := range map[string]string{
		"title":  "remediator",
		"source": "https://github.com/remediator/remediator",
	} {
		if got := c.Labels["org.opencontainers.image."+key]; got != want {
			t.Errorf("label org.opencontainers.image.%s %q, want %q", key, got, want)
		}
	}
	if c.Labels["org.opencontainers.image.description"] == "" {
		t.Error("no label org.opencontainers.image.description")
	}
	t.Run("Dockerfile", func(t *testing.T) { dockerfileMatches(t, cfg) })

	dir := t.TempDir()
	files := layerFiles(t, blobs, m, dir)
	for _, f := range []string{"/usr/local/bin/remediator", "/usr/local/bin/etcdutl"} {
		if files[f]&0o111 == 0 {
			t.Errorf("%s: mode %v, want an executable file", f, files[f])
		}
	}
	for _, f := range []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/passwd", "/etc/group"} {
		if _, ok := files[f]; !ok {
			t.Errorf("no %s in the image", f)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etc/passwd")); !strings.Contains(string(b), "\nnonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd does not name user 65532 nonroot:\n%s", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etc/ssl/certs/ca-certificates.crt")); !strings.Contains(string(b), "-----BEGIN CERTIFICATE-----") {
		t.Error("/etc/ssl/certs/ca-certificates.crt holds no certificate: Slack's HTTPS would fail")
	}
	for _, sh := range []string{"/bin/sh", "/bin/bash", "/usr/bin/sh"} {
		if _, ok := files[sh]; ok {
			t.Errorf("%s is in the image: it needs no shell, and one is a tool for whoever breaks in", sh)
		}
	}
	run := func(bin string, args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(dir, bin), args...).CombinedOutput()
		if err != nil {
			t.Errorf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("usr/local/bin/remediator", "version"); !strings.Contains(out, version) || !strings.Contains(out, commit) {
		t.Errorf("remediator version in the image says %q, want the labels' %s and %s", out, version, commit)
	}
	if out := run("usr/local/bin/remediator", "serve", "--help"); !strings.Contains(out, "--config") || !strings.Contains(out, "--role") {
		t.Errorf("remediator serve --help: %s", out)
	}
	if out := run("usr/local/bin/etcdutl", "version"); !strings.Contains(out, "etcdutl version") {
		t.Errorf("etcdutl version: %s", out)
	}
}

// git runs git in the checkout and returns its output, trimmed; the labels are checked
// against it.
func git(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		t.Fatalf("git %s: %v: the image's labels are checked against the checkout", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// sameTime reports whether t is the instant an RFC 3339 string (git's %cI) names.
func sameTime(t time.Time, s string) bool {
	u, err := time.Parse(time.RFC3339, s)
	return err == nil && t.Equal(u)
}

// dockerfileFinalStage returns the instructions of the Dockerfile's last stage, continuation
// lines joined, comments and blank lines left out.
func dockerfileFinalStage(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var final []string
	sc := bufio.NewScanner(f)
	line := ""
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		line += " " + strings.TrimSuffix(text, "\\")
		if strings.HasSuffix(text, "\\") {
			continue
		}
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "FROM ") {
			final = nil
		}
		final = append(final, line)
		line = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return final
}

// ociLabelKeys returns the org.opencontainers.image.* keys named in text, sorted, once each.
func ociLabelKeys(text string) []string {
	keys := regexp.MustCompile(`org\.opencontainers\.image\.[a-z]+`).FindAllString(text, -1)
	slices.Sort(keys)
	return slices.Compact(keys)
}

// dockerfileMatches: the Dockerfile's last stage gives the image the user, working dir,
// entrypoint, command, environment and label keys that make image gave the archive.
func dockerfileMatches(t *testing.T, cfg ociConfig) {
	c := cfg.Config
	final := dockerfileFinalStage(t)
	entrypoint, _ := json.Marshal(c.Entrypoint)
	cmd, _ := json.Marshal(c.Cmd)
	env := slices.Clone(c.Env)
	slices.Sort(env)
	for _, want := range []string{
		"FROM scratch",
		"USER " + c.User,
		"WORKDIR " + c.WorkingDir,
		"ENTRYPOINT " + string(entrypoint),
		"CMD " + string(cmd),
		"ENV " + strings.Join(env, " "),
	} {
		if !slices.Contains(final, want) {
			t.Errorf("the image has %q, the Dockerfile's last stage does not: %q", want, final)
		}
	}
	var labels []string
	for k := range c.Labels {
		if strings.HasPrefix(k, "org.opencontainers.image.") {
			labels = append(labels, k)
		}
	}
	slices.Sort(labels)
	if got := ociLabelKeys(strings.Join(final, "\n")); !slices.Equal(got, labels) {
		t.Errorf("labels: the image has %v, the Dockerfile %v", labels, got)
	}
}

// TestDockerfileBuildsTheSameImage: the Dockerfile, for those who build with docker, gives
// the image the user, entrypoint, command and labels that image/build.sh gives it. It reads
// the two files, so it runs without the archive; TestImage/Dockerfile checks the built image.
func TestDockerfileBuildsTheSameImage(t *testing.T) {
	final := dockerfileFinalStage(t)
	for _, want := range []string{
		"FROM scratch",
		"USER 65532:65532",
		`ENTRYPOINT ["/usr/local/bin/remediator"]`,
		`CMD ["serve"]`,
	} {
		if !slices.Contains(final, want) {
			t.Errorf("the Dockerfile's last stage lacks %q: %q", want, final)
		}
	}
	b, err := os.ReadFile("../image/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	if inScript, inDockerfile := ociLabelKeys(script), ociLabelKeys(strings.Join(final, "\n")); !slices.Equal(inScript, inDockerfile) {
		t.Errorf("labels: image/build.sh %v, Dockerfile %v; want the same", inScript, inDockerfile)
	}
	for _, want := range []string{`--user 65532:65532`, `--entrypoint '["/usr/local/bin/remediator"]'`, `--cmd '["serve"]'`} {
		if !strings.Contains(script, want) {
			t.Errorf("image/build.sh lacks %s, which the Dockerfile sets", want)
		}
	}
	// The builder's Go is the one go.mod names, so both builds compile with the same toolchain.
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if goLine == nil {
		t.Fatal("go.mod has no go line")
	}
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^FROM golang:` + regexp.QuoteMeta(string(goLine[1])) + `[-\s]`).Match(dockerfile) {
		t.Errorf("the Dockerfile's builder is not golang:%s, the go line of go.mod", goLine[1])
	}
}
