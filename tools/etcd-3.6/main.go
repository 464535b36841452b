// Command etcd is the official etcd 3.6 server, built from go.etcd.io/etcd/server/v3 at the
// version pinned in this module's go.mod, so that tests run the members of clusters still on
// 3.6 as real processes. It lives in its own module so that the server and its dependency tree
// stay out of remediator's go.mod.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
