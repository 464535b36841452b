// Command etcdutl is the official etcdutl 3.6 (snapshot restore, defrag and status of a
// stopped member's files), built from go.etcd.io/etcd/etcdutl/v3 at the version pinned in this
// module's go.mod, so that tests restore 3.6 members with the tool operators use, at the same
// version as the etcd server built next to it.
package main

import (
	"github.com/spf13/cobra"

	"go.etcd.io/etcd/etcdutl/v3/etcdutl"
	"go.etcd.io/etcd/pkg/v3/cobrautl"
)

func main() {
	// The same root command as etcdutl's own main package (the module's root), which cannot
	// be imported.
	root := &cobra.Command{Use: "etcdutl", Short: "An administrative command line tool for etcd3."}
	root.PersistentFlags().StringVarP(&etcdutl.OutputFormat, "write-out", "w", "simple", "set the output format (fields, json, protobuf, simple, table)")
	root.AddCommand(
		etcdutl.NewDefragCommand(),
		etcdutl.NewSnapshotCommand(),
		etcdutl.NewHashKVCommand(),
		etcdutl.NewVersionCommand(),
		etcdutl.NewMigrateCommand(),
	)
	if err := root.Execute(); err != nil {
		cobrautl.ExitWithError(cobrautl.ExitError, err)
	}
}
