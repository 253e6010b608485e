// Command nftwarden-cni is the chained CNI plugin of nftwarden (see package
// daemon/cniplugin): the runtime runs it after the main plugin, and it returns
// once the nftwarden daemon has programmed the new pod's isolation.
package main

import "github.com/nftwarden/nftwarden/daemon/cniplugin"

func main() { cniplugin.Main() }
