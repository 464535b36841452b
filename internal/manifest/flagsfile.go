package manifest

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Format is how a flags file writes a flag.
type Format string

// The flags file formats.
const (
	// FormatEnv is an environment file (systemd EnvironmentFile, /etc/default/etcd, BOSH's
	// etcd env): ETCD_INITIAL_CLUSTER_STATE=existing sets --initial-cluster-state.
	FormatEnv Format = "env"
	// FormatArgs is one --flag=value per line.
	FormatArgs Format = "args"
)

// FlagsFile is a service's env or flags file.
type FlagsFile struct {
	format Format
	lines  []string
	final  bool
}

// ParseFlagsFile reads a flags file of the given format.
func ParseFlagsFile(data []byte, format Format) (*FlagsFile, error) {
	if format != FormatEnv && format != FormatArgs {
		return nil, fmt.Errorf("manifest: flags file format %q is neither env nor args", format)
	}
	f := &FlagsFile{format: format, final: bytes.HasSuffix(data, []byte("\n"))}
	if len(data) > 0 {
		f.lines = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	}
	return f, nil
}

// Bytes is the file as edited.
func (f *FlagsFile) Bytes() []byte {
	s := strings.Join(f.lines, "\n")
	if f.final || len(f.lines) > 0 {
		s += "\n"
	}
	return []byte(s)
}

// parseLine returns the flag a line sets, if it sets one.
func (f *FlagsFile) parseLine(line string) (name, value string, ok bool) {
	t := strings.TrimSpace(line)
	if t == "" || strings.HasPrefix(t, "#") {
		return "", "", false
	}
	if f.format == FormatArgs {
		return splitFlag(t)
	}
	t = strings.TrimPrefix(t, "export ")
	key, value, found := strings.Cut(t, "=")
	if !found || !strings.HasPrefix(key, "ETCD_") {
		return "", "", false
	}
	if u, err := strconv.Unquote(value); err == nil {
		value = u
	} else if len(value) >= 2 && value[0] == '\'' && value[len(value)-1] == '\'' {
		value = value[1 : len(value)-1]
	}
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(key, "ETCD_"), "_", "-")), value, true
}

func (f *FlagsFile) line(name, value string) string {
	if f.format == FormatArgs {
		return flagArg(name, value)
	}
	if value == "" {
		value = "true" // an env variable cannot be bare
	}
	return "ETCD_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "=" + value
}

// shellSafe says whether every byte of s means itself to a shell that sources the file, to
// systemd's EnvironmentFile and to a command line built from an args file: no quoting, no
// expansion, no word splitting. Every value the remediations set is made of these.
func shellSafe(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("._:/,=+@%-", r):
		default:
			return false
		}
	}
	return true
}

// Flags returns the flags the file sets.
func (f *FlagsFile) Flags() map[string]string {
	flags := map[string]string{}
	for _, l := range f.lines {
		if name, value, ok := f.parseLine(l); ok {
			flags[name] = value
		}
	}
	return flags
}

// Set sets a flag, replacing its line or adding one at the end.
func (f *FlagsFile) Set(name, value string) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	if !shellSafe(name) || !shellSafe(value) {
		return false, fmt.Errorf("manifest: --%s=%q: a flags file takes only letters, digits and ._:/,=+@%%- in a value, which a shell that sources it cannot run or split", name, value)
	}
	want := f.line(name, value)
	for i, l := range f.lines {
		if got, _, ok := f.parseLine(l); ok && got == name {
			if strings.TrimSpace(l) == want {
				return false, nil
			}
			f.lines[i] = want
			return true, nil
		}
	}
	f.lines = append(f.lines, want)
	return true, nil
}

// Remove removes a flag's line.
func (f *FlagsFile) Remove(name string) bool {
	for i, l := range f.lines {
		if got, _, ok := f.parseLine(l); ok && got == name {
			f.lines = append(f.lines[:i], f.lines[i+1:]...)
			return true
		}
	}
	return false
}
