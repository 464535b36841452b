package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

// version and commit are stamped by the build (make build, the image):
// -ldflags "-X main.version=$(git describe --tags --always --dirty) -X main.commit=$(git rev-parse HEAD)".
// Without them, the Go toolchain's own record of the module and the VCS stands in.
var version, commit string

// Build is what this binary is.
type Build struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
}

func (b Build) String() string {
	return fmt.Sprintf("remediator %s (commit %s, %s)", b.Version, b.Commit, b.Go)
}

func buildVersion() Build {
	b := Build{Version: version, Commit: commit, Go: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && b.Commit == "" {
				b.Commit = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

// buildInfo is the remediator_build_info metric: 1, labelled with what this binary is, so
// that a dashboard can tell which version each replica runs.
func buildInfo() prometheus.Collector {
	b := buildVersion()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "remediator_build_info",
		Help:        "Always 1; its labels say which version, commit and Go built this replica.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": b.Go},
	})
	g.Set(1)
	return g
}

func versionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print remediator's version, commit and Go version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := buildVersion()
			return printAs(cmd.OutOrStdout(), output, b, func(w io.Writer) error {
				_, err := fmt.Fprintln(w, b)
				return err
			})
		},
	}
	outputFlag(cmd, &output, "text", outputs...)
	return cmd
}
