package daemon

import "github.com/urfave/cli/v2"

// flagCNIConfDir is run's --cni-conf-dir (runConfig.CNIConfDir).
const flagCNIConfDir = "cni-conf-dir"

// cniConfDirFlag: where the DaemonSet's init container installed
// nftwarden-cni; when the DaemonSet is deleted (see uninstalling) the daemon
// takes the plugin out of that directory's configuration before it exits.
func cniConfDirFlag() cli.Flag {
	return &cli.StringFlag{
		Name: flagCNIConfDir,
		Usage: "CNI configuration `DIR` where `nftwarden cni install` chained nftwarden-cni: when the DaemonSet is " +
			"deleted the plugin is taken out of it (with --cleanup-on-uninstall); empty: never touched",
		EnvVars: []string{"NFTWARDEN_CNI_CONF_DIR"},
	}
}
