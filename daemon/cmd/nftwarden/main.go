// Command nftwarden enforces Kubernetes NetworkPolicy on one node with
// nftables. The command lives in package daemon; this directory only gives the
// binary its name, so that
//
//	go install github.com/nftwarden/nftwarden/daemon/cmd/nftwarden@latest
//
// installs a binary called nftwarden.
package main

import (
	"context"
	"os"

	"github.com/nftwarden/nftwarden/daemon"
)

func main() {
	os.Exit(daemon.Main(context.Background(), os.Args, os.Stdout, os.Stderr))
}
