// Command helm is the Helm client, built from helm.sh/helm/v4 at the version pinned in this
// module's go.mod (cmd/helm/helm.go there, less the client-go auth plugins: the lint renders
// charts and talks to no cluster). It lives in its own module so that Helm and the k8s.io
// modules it brings stay out of remediator's go.mod; `make lint-deploy` runs it as bin/helm to
// lint and render deploy/helm/remediator.
package main

import (
	"errors"
	"log/slog"
	"os"

	helmcmd "helm.sh/helm/v4/pkg/cmd"
	"helm.sh/helm/v4/pkg/kube"
)

func main() {
	// The manager name of managedFields, as upstream: "helm" whatever the binary is called.
	kube.ManagedFieldsManager = "helm"

	cmd, err := helmcmd.NewRootCmd(os.Stdout, os.Args[1:], helmcmd.SetupLogging)
	if err != nil {
		slog.Warn("command failed", slog.Any("error", err))
		os.Exit(1)
	}
	if err := cmd.Execute(); err != nil {
		// A plugin's or a command's own exit code, as upstream.
		if cerr, ok := errors.AsType[helmcmd.CommandError](err); ok {
			os.Exit(cerr.ExitCode)
		}
		os.Exit(1)
	}
}
