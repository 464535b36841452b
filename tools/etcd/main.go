// Command etcd is the official etcd server, built from go.etcd.io/etcd/server/v3 at the
// version pinned in this module's go.mod. It lives in its own module so that the server and
// its dependency tree stay out of remediator's go.mod; tests and `make demo` run it as real
// member processes.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
