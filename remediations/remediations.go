// Package remediations is the catalog of every remediation remediator can run. It is the one
// place that imports them all; each family lives in its own subpackage.
package remediations

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/remediations/apiserver"
	"github.com/remediator/remediator/remediations/defrag"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/keyguard"
	"github.com/remediator/remediator/remediations/membership"
	"github.com/remediator/remediator/remediations/nodeops"
	"github.com/remediator/remediator/remediations/nospace"
	"github.com/remediator/remediator/remediations/params"
	"github.com/remediator/remediator/remediations/probeguard"
	"github.com/remediator/remediator/remediations/snapshotmissing"
)

// planner is a remediation: it turns its parameters into steps, without touching anything,
// and declares those parameters (one tagged struct, read with package params).
type planner interface {
	Plan(params map[string]string) ([]remediator.PlannedStep, error)
	Params() []params.Field
}

// Deps is what the remediations act with.
type Deps struct {
	Etcd *etcdops.Clients
	// Nodes reaches the node agents, for node-local steps.
	Nodes *nodeops.Nodes
	// Guarded holds the last good values of the guarded keys.
	Guarded keyguard.Values
	// BackupDir is where snapshots are saved, under a folder per cluster.
	BackupDir string
}

// Catalog finds remediations by name.
type Catalog struct {
	byName map[string]entry
}

// entry is a remediation and its title: what it does, in a few words for people, naming what
// it wraps where it wraps another, since its name names only the wrapper.
type entry struct {
	planner
	title string
}

// New returns the catalog of every remediation.
func New(d Deps) *Catalog {
	recovery := nospace.New(d.Etcd, d.BackupDir)
	return &Catalog{byName: map[string]entry{
		nospace.Name:                 {recovery, "NOSPACE recovery"},
		probeguard.Name:              {probeguard.New(d.Etcd, d.Nodes, recovery), "NOSPACE recovery with liveness probes guarded"},
		keyguard.Name:                {keyguard.New(d.Etcd, d.Guarded), "Guarded key restore"},
		defrag.Name:                  {defrag.New(d.Etcd), "Defragmentation of fragmented members"},
		apiserver.Name:               {apiserver.New(d.Etcd, d.Nodes), "Longer kube-apiserver etcd check timeouts"},
		snapshotmissing.Name:         {snapshotmissing.New(d.Etcd, d.Nodes), "Recovery of a member missing its raft snapshot"},
		membership.ReplaceName:       {membership.NewReplace(d.Etcd, d.Nodes, d.BackupDir), "Member replacement"},
		membership.QuorumRestoreName: {membership.NewQuorumRestore(d.Etcd, d.Nodes, d.BackupDir), "Quorum restore"},
	}}
}

// Title is what the named remediation does, in a few words for people; the name itself for a
// remediation the catalog does not know.
func (c *Catalog) Title(name string) string {
	if e, ok := c.byName[name]; ok {
		return e.title
	}
	return name
}

// names lists the remediations, sorted.
func (c *Catalog) names() []string { return slices.Sorted(maps.Keys(c.byName)) }

// Plan returns the steps of the named remediation with the given parameters.
func (c *Catalog) Plan(name string, params map[string]string) ([]remediator.PlannedStep, error) {
	p, ok := c.byName[name]
	if !ok {
		return nil, remediator.Errorf(remediator.ENOTFOUND, "remediation %q does not exist (known: %s)", name, strings.Join(c.names(), ", "))
	}
	steps, err := p.Plan(params)
	if err != nil {
		return nil, remediator.Errorf(remediator.ErrorCode(err), "remediation %s: %w", name, err)
	}
	return steps, nil
}

// Validate checks that the named remediation exists and takes the parameters.
func (c *Catalog) Validate(name string, params map[string]string) error {
	_, err := c.Plan(name, params)
	return err
}

// Description is what a remediation does and takes, for operators: its steps as planned with
// every parameter at its default, and its parameters.
type Description struct {
	Name   string
	Title  string
	Steps  []remediator.PlannedStep
	Params []params.Field
}

// Describe returns every remediation's description, sorted by name.
func (c *Catalog) Describe() ([]Description, error) {
	var out []Description
	for _, name := range c.names() {
		p := c.byName[name]
		steps, err := p.Plan(nil)
		if err != nil {
			return nil, fmt.Errorf("remediation %s does not plan on its defaults: %w", name, err)
		}
		out = append(out, Description{Name: name, Title: p.title, Steps: steps, Params: p.Params()})
	}
	return out, nil
}

// Markdown renders the descriptions as the README's section on them: per remediation, its
// steps with their risk and its parameters' table.
func Markdown(ds []Description) string {
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "#### `%s`\n\nSteps: ", d.Name)
		for j, s := range d.Steps {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s (%s)", s.Name, s.Risk)
		}
		b.WriteString(".\n\n")
		b.WriteString(params.Markdown(d.Params))
	}
	return b.String()
}
