// Package manifest edits the files that hold a control-plane component's command line: a
// kubeadm static pod manifest, or the env or flags file of an etcd run by systemd or monit.
// Every edit changes only the lines it must, so the file's comments and formatting stay as
// the operator left them, and every edit is checked by reading the result back.
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Flags is a file of command-line flags that can be edited in place.
type Flags interface {
	// Flags returns the flags by name, without dashes; a bare flag has an empty value.
	Flags() map[string]string
	// Set sets a flag, adding it if absent, and says whether the file changed.
	Set(name, value string) (bool, error)
	// Remove removes a flag and says whether it was there.
	Remove(name string) bool
	// Bytes is the file as edited.
	Bytes() []byte
}

// suspendMark starts every line of a probe remediator turned off: a YAML comment, so the
// kubelet ignores the probe, and a mark, so remediator knows the lines are its own to restore.
const suspendMark = "#remediator:suspended# "

// Pod is a static pod manifest of one container, such as kubeadm's etcd.yaml.
type Pod struct {
	lines []string
	// final is whether the file ended with a newline.
	final bool
}

// ParsePod reads a static pod manifest.
func ParsePod(data []byte) (*Pod, error) {
	p := &Pod{final: bytes.HasSuffix(data, []byte("\n"))}
	p.lines = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if _, err := p.container(); err != nil {
		return nil, err
	}
	return p, nil
}

// Bytes is the manifest as edited.
func (p *Pod) Bytes() []byte {
	s := strings.Join(p.lines, "\n")
	if p.final {
		s += "\n"
	}
	return []byte(s)
}

// container is the parsed manifest's first container, and its command and args.
type container struct {
	node    *yaml.Node
	command *yaml.Node // sequence holding the flags: command, or args when flags are there
}

func (p *Pod) container() (container, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(p.Bytes(), &doc); err != nil {
		return container{}, fmt.Errorf("manifest: %w", err)
	}
	if len(doc.Content) == 0 {
		return container{}, errors.New("manifest: empty file")
	}
	spec := mapValue(doc.Content[0], "spec")
	containers := mapValue(spec, "containers")
	if containers == nil || containers.Kind != yaml.SequenceNode || len(containers.Content) == 0 {
		return container{}, errors.New("manifest: spec.containers: no container")
	}
	c := container{node: containers.Content[0]}
	for _, key := range []string{"args", "command"} {
		seq := mapValue(c.node, key)
		if seq == nil || seq.Kind != yaml.SequenceNode {
			continue
		}
		if c.command == nil || slices.ContainsFunc(seq.Content, func(n *yaml.Node) bool { return strings.HasPrefix(n.Value, "--") }) {
			c.command = seq
		}
	}
	if c.command == nil || len(c.command.Content) == 0 {
		return container{}, errors.New("manifest: spec.containers[0]: no command or args")
	}
	for _, n := range c.command.Content {
		if n.Kind != yaml.ScalarNode || n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
			return container{}, fmt.Errorf("manifest: line %d: a command item that is not a one-line string", n.Line)
		}
	}
	return c, nil
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// Command is the container's command line: the program and its arguments.
func (p *Pod) Command() []string {
	c, err := p.container()
	if err != nil {
		return nil
	}
	var out []string
	if cmd := mapValue(c.node, "command"); cmd != nil && cmd != c.command {
		for _, n := range cmd.Content {
			out = append(out, n.Value)
		}
	}
	for _, n := range c.command.Content {
		out = append(out, n.Value)
	}
	return out
}

// Image is the container's image, such as kubeadm's registry.k8s.io/etcd:3.5.12-0: its tag
// says which version the container runs.
func (p *Pod) Image() string {
	c, err := p.container()
	if err != nil {
		return ""
	}
	if img := mapValue(c.node, "image"); img != nil && img.Kind == yaml.ScalarNode {
		return img.Value
	}
	return ""
}

// Flags returns the container's flags by name.
func (p *Pod) Flags() map[string]string {
	return parseArgs(p.Command())
}

func parseArgs(args []string) map[string]string {
	flags := map[string]string{}
	for _, a := range args {
		if name, value, ok := splitFlag(a); ok {
			flags[name] = value
		}
	}
	return flags
}

// splitFlag splits --name=value (or a bare --name) into its name and value.
func splitFlag(arg string) (name, value string, ok bool) {
	if !strings.HasPrefix(arg, "-") {
		return "", "", false
	}
	name, value, _ = strings.Cut(strings.TrimLeft(arg, "-"), "=")
	return name, value, name != ""
}

func flagArg(name, value string) string {
	if value == "" {
		return "--" + name
	}
	return "--" + name + "=" + value
}

// Set sets a flag in the container's command, adding it in alphabetical place (as kubeadm
// writes them) if it is absent.
func (p *Pod) Set(name, value string) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	c, err := p.container()
	if err != nil {
		return false, err
	}
	item, err := yamlItem(flagArg(name, value))
	if err != nil {
		return false, err
	}
	items := c.command.Content
	for _, n := range items {
		if got, v, ok := splitFlag(n.Value); ok && got == name {
			if v == value {
				return false, nil
			}
			p.replaceItem(n.Line-1, item)
			return true, p.check(name, value, true)
		}
	}
	// Insert before the first flag that sorts after it, or after the last item.
	at := items[len(items)-1]
	before := false
	for _, n := range items {
		if got, _, ok := splitFlag(n.Value); ok && got > name {
			at, before = n, true
			break
		}
	}
	line := p.lines[at.Line-1]
	indent := line[:strings.Index(line, "-")]
	idx := at.Line
	if before {
		idx--
	}
	p.lines = slices.Insert(p.lines, idx, indent+"- "+item)
	return true, p.check(name, value, true)
}

// Remove removes a flag from the container's command.
func (p *Pod) Remove(name string) bool {
	c, err := p.container()
	if err != nil {
		return false
	}
	for _, n := range c.command.Content {
		if got, _, ok := splitFlag(n.Value); ok && got == name {
			p.lines = slices.Delete(p.lines, n.Line-1, n.Line)
			return true
		}
	}
	return false
}

// replaceItem rewrites a "- item" line, keeping its indentation and any trailing comment.
func (p *Pod) replaceItem(i int, item string) {
	line := p.lines[i]
	dash := strings.Index(line, "-")
	comment := ""
	if j := strings.Index(line, " #"); j > dash {
		comment = line[j:]
	}
	p.lines[i] = line[:dash] + "- " + item + comment
}

// check reads the edited manifest back: the edit must parse and say what was meant.
func (p *Pod) check(name, value string, present bool) error {
	if _, err := p.container(); err != nil {
		return fmt.Errorf("manifest: the edit of --%s broke the file: %w", name, err)
	}
	got, ok := p.Flags()[name]
	if ok != present || got != value {
		return fmt.Errorf("manifest: after the edit --%s reads %q, not %q", name, got, value)
	}
	return nil
}

func checkName(name string) error {
	if name == "" || strings.ContainsAny(name, "= \t\n#\"'") || strings.HasPrefix(name, "-") {
		return fmt.Errorf("manifest: %q is not a flag name", name)
	}
	return nil
}

// yamlItem writes a sequence item's value as YAML would, quoted only where it must be.
func yamlItem(s string) (string, error) {
	if strings.ContainsAny(s, "\n\r") {
		return "", fmt.Errorf("manifest: a flag value must be one line")
	}
	b, err := yaml.Marshal(s)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// Probe describes the container's liveness probe: its HTTP path or command, and whether
// remediator suspended it.
func (p *Pod) Probe() (present, suspended bool, target string) {
	if start, end, ok := p.suspendedProbe(); ok {
		var lines []string
		for _, l := range p.lines[start:end] {
			lines = append(lines, strings.TrimPrefix(l, suspendMark))
		}
		return true, true, probeTarget(lines)
	}
	start, end, ok := p.probeLines()
	if !ok {
		return false, false, ""
	}
	return true, false, probeTarget(p.lines[start:end])
}

func probeTarget(lines []string) string {
	var probe struct {
		LivenessProbe struct {
			HTTPGet struct {
				Path string `yaml:"path"`
			} `yaml:"httpGet"`
			Exec struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
		} `yaml:"livenessProbe"`
	}
	indent := len(lines[0]) - len(strings.TrimLeft(lines[0], " "))
	var b strings.Builder
	for _, l := range lines {
		if len(l) >= indent {
			l = l[indent:]
		}
		b.WriteString(l + "\n")
	}
	if yaml.Unmarshal([]byte(b.String()), &probe) != nil {
		return ""
	}
	if path := probe.LivenessProbe.HTTPGet.Path; path != "" {
		return path
	}
	return strings.Join(probe.LivenessProbe.Exec.Command, " ")
}

// probeLines finds the livenessProbe key of the container and the lines of its block.
func (p *Pod) probeLines() (start, end int, ok bool) {
	c, err := p.container()
	if err != nil {
		return 0, 0, false
	}
	for i := 0; i+1 < len(c.node.Content); i += 2 {
		if c.node.Content[i].Value != "livenessProbe" {
			continue
		}
		key := c.node.Content[i]
		start = key.Line - 1
		col := key.Column - 1
		// A "- livenessProbe:" first key of the container shares its line with the dash.
		if strings.TrimSpace(p.lines[start][:col]) == "-" {
			return 0, 0, false
		}
		end = start + 1
		for end < len(p.lines) {
			l := p.lines[end]
			trimmed := strings.TrimLeft(l, " ")
			if trimmed != "" && len(l)-len(trimmed) <= col {
				break
			}
			end++
		}
		return start, end, true
	}
	return 0, 0, false
}

func (p *Pod) suspendedProbe() (start, end int, ok bool) {
	start = slices.IndexFunc(p.lines, func(l string) bool { return strings.HasPrefix(l, suspendMark) })
	if start < 0 {
		return 0, 0, false
	}
	end = start
	for end < len(p.lines) && strings.HasPrefix(p.lines[end], suspendMark) {
		end++
	}
	return start, end, true
}

// SuspendProbe comments out the liveness probe, marked so RestoreProbe can turn it back on,
// and says whether the file changed.
func (p *Pod) SuspendProbe() (bool, error) {
	if _, _, ok := p.suspendedProbe(); ok {
		return false, nil
	}
	start, end, ok := p.probeLines()
	if !ok {
		return false, nil
	}
	for i := start; i < end; i++ {
		p.lines[i] = suspendMark + p.lines[i]
	}
	if _, _, ok := p.probeLines(); ok {
		return true, errors.New("manifest: the liveness probe is still there after commenting it out")
	}
	_, err := p.container()
	return true, err
}

// RestoreProbe turns a suspended liveness probe back on and says whether the file changed.
func (p *Pod) RestoreProbe() (bool, error) {
	start, end, ok := p.suspendedProbe()
	if !ok {
		return false, nil
	}
	for i := start; i < end; i++ {
		p.lines[i] = strings.TrimPrefix(p.lines[i], suspendMark)
	}
	if _, err := p.container(); err != nil {
		return true, fmt.Errorf("manifest: the restored liveness probe broke the file: %w", err)
	}
	if _, _, ok := p.probeLines(); !ok {
		return true, errors.New("manifest: the liveness probe is not back after restoring it")
	}
	return true, nil
}
