// Command nats-server is the official NATS server, built from github.com/nats-io/nats-server/v2
// at the version pinned in this module's go.mod, as that module's own main.go runs it. It lives
// in its own module so that tests can run real server processes (a cluster whose nodes can be
// killed and restarted) without a server binary installed on the machine.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	exe := "nats-server"
	fs := flag.NewFlagSet(exe, flag.ExitOnError)
	// -h prints the flags ConfigureOptions defines; `nats-server --help` of a release has the prose.
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: %s [options]\n", exe)
		fs.PrintDefaults()
	}
	opts, err := server.ConfigureOptions(fs, os.Args[1:],
		server.PrintServerAndExit,
		fs.Usage,
		server.PrintTLSHelpAndDie)
	if err != nil {
		server.PrintAndDie(fmt.Sprintf("%s: %s", exe, err))
	} else if opts.CheckConfig {
		fmt.Fprintf(os.Stderr, "%s: configuration file %s is valid (%s)\n", exe, opts.ConfigFile, opts.ConfigDigest())
		os.Exit(0)
	}
	// Redact secret arguments before expvar reads them.
	server.RedactArgs(os.Args)
	s, err := server.NewServer(opts)
	if err != nil {
		server.PrintAndDie(fmt.Sprintf("%s: %s", exe, err))
	}
	s.ConfigureLogger()
	if err := server.Run(s); err != nil {
		server.PrintAndDie(err.Error())
	}
	s.WaitForShutdown()
}
