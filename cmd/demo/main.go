// Command demo is `make demo`: it heals a local etcd filled into NOSPACE with remediator and
// prints the report. It expects the binaries `make build` puts in bin/.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/remediator/remediator/internal/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var o demo.Options
	flag.StringVar(&o.Remediator, "remediator", "bin/remediator", "remediator binary")
	flag.StringVar(&o.Payload, "payload", "testdata/alertmanager/nospace-firing.json", "Alertmanager webhook payload to send")
	flag.StringVar(&o.Resolved, "resolved", "testdata/alertmanager/nospace-resolved.json", "the payload that says the alerts resolved")
	flag.StringVar(&o.Dir, "dir", ".demo", "working folder (emptied first)")
	flag.StringVar(&o.Addr, "addr", "127.0.0.1:9095", "where remediator listens on its defaults")
	flag.Parse()
	if err := demo.Run(ctx, os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
