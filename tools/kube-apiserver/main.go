// Command kube-apiserver is the official Kubernetes API server, built from k8s.io/kubernetes
// at the version pinned in this module's go.mod (cmd/kube-apiserver/apiserver.go there). It
// lives in its own module so that Kubernetes and its dependency tree stay out of remediator's
// go.mod; the apiserver remediation's tests run it as the static pod it heals.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // the JSON log format, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go's metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // the version metric, as upstream
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
