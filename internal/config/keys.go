package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"
)

// WriteSeed makes an nkey user and writes its seed to path, readable by its owner only,
// refusing to replace a file there. The seed is whole on disk before the name appears, so a
// crash leaves no empty key behind.
func WriteSeed(path string) (nkeys.KeyPair, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := fmt.Fprintf(f, "%s\n", seed); err != nil {
		f.Close()
		return nil, err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return nil, err
	}
	// CreateTemp makes the file 0600; a link fails if path exists, where a rename would not.
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%s exists: not replacing a key", path)
	} else if err != nil {
		return nil, err
	}
	return kp, nil
}

// EnterAgent sets an agent's key in the agents file, keeping its other lines, and checks the
// result as serve will read it.
func EnterAgent(path, id string, pub string, clusters []string) error {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var lines []string
	if len(data) > 0 {
		lines = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	}
	entry := fmt.Sprintf("%s: %s", id, pub)
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), id+":") })
	if i >= 0 {
		lines[i] = entry
	} else {
		if len(lines) == 0 {
			lines = append(lines, "# The node agents' public NATS keys: <cluster>/<node>: <key>. Made by remediator agent credentials.")
		}
		lines = append(lines, entry)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	if _, err := ReadAgents(tmp, clusters); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
