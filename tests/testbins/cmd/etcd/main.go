// etcd for flotilla's real-cluster tests: the same program as etcd's server/main.go, at the etcd
// version k8s.io/kubernetes itself requires (see ../../go.mod).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
