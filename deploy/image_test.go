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
		Config struct {
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
	version, commit := c.Labels["org.opencontainers.image.version"], c.Labels["org.opencontainers.image.revision"]
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(commit) || version == "" || version == "unknown" {
		t.Errorf("labels version %q, revision %q: want them stamped from git", version, commit)
	}
	for _, key := range []string{"title", "description", "source", "created"} {
		if c.Labels["org.opencontainers.image."+key] == "" {
			t.Errorf("no label org.opencontainers.image.%s", key)
		}
	}

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

// TestDockerfileBuildsTheSameImage: the Dockerfile, for those who build with docker, gives
// the image the user, entrypoint, command and labels that make image gives it.
func TestDockerfileBuildsTheSameImage(t *testing.T) {
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var final []string // the instructions of the last stage, continuation lines joined
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
	has := func(want string) {
		t.Helper()
		if !slices.Contains(final, want) {
			t.Errorf("the Dockerfile's last stage lacks %q: %q", want, final)
		}
	}
	has("FROM scratch")
	has("USER 65532:65532")
	has(`ENTRYPOINT ["/usr/local/bin/remediator"]`)
	has(`CMD ["serve"]`)
	script, err := os.ReadFile("../image/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	labels := regexp.MustCompile(`org\.opencontainers\.image\.[a-z]+`)
	inScript, inDockerfile := labels.FindAllString(string(script), -1), labels.FindAllString(strings.Join(final, "\n"), -1)
	slices.Sort(inScript)
	slices.Sort(inDockerfile)
	if !slices.Equal(slices.Compact(inScript), slices.Compact(inDockerfile)) {
		t.Errorf("labels: image/build.sh %v, Dockerfile %v; want the same", slices.Compact(inScript), slices.Compact(inDockerfile))
	}
	if !strings.Contains(string(script), `--user 65532:65532`) || !strings.Contains(string(script), `--entrypoint '["/usr/local/bin/remediator"]'`) {
		t.Errorf("image/build.sh does not set the user and entrypoint the Dockerfile does")
	}
}
