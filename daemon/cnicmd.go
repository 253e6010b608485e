package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/nftwarden/nftwarden/daemon/cniconf"
	"github.com/nftwarden/nftwarden/daemon/cniwire"
)

// Flags of `nftwarden cni install|uninstall`.
const (
	flagConfDir       = "conf-dir"
	flagCNIBinDir     = "bin-dir"
	flagPluginBinary  = "plugin-binary"
	flagPluginSocket  = "socket"
	flagPluginTimeout = "plugin-timeout"
)

// Where runtimes keep CNI configurations and plugins unless told otherwise.
const (
	defaultCNIConfDir = "/etc/cni/net.d"
	defaultCNIBinDir  = "/opt/cni/bin"
)

func confDirFlag() cli.Flag {
	return &cli.StringFlag{
		Name:  flagConfDir,
		Usage: "the runtime's CNI configuration `DIR`: its first *.conf, *.conflist or *.json file is the one edited",
		Value: defaultCNIConfDir,
	}
}

// defaultPluginBinary is nftwarden-cni beside this executable (the image
// holds both in /).
func defaultPluginBinary() string {
	exe, err := os.Executable()
	if err != nil {
		return cniconf.PluginType
	}
	return filepath.Join(filepath.Dir(exe), cniconf.PluginType)
}

// cniCommand is `nftwarden cni`: the chained plugin's install and removal.
func (env *cliEnv) cniCommand(onUsageError cli.OnUsageErrorFunc) *cli.Command {
	return &cli.Command{
		Name:  "cni",
		Usage: "install or remove the chained CNI plugin nftwarden-cni on this node",
		Description: "nftwarden-cni holds each new pod's start until the daemon has programmed its policy (see the README,\n" +
			"\"Chained CNI plugin\"). install copies the binary into --bin-dir and appends the plugin to the runtime's\n" +
			"network configuration in --conf-dir; uninstall takes it out again.",
		OnUsageError: onUsageError,
		Subcommands: []*cli.Command{
			{
				Name:         "install",
				Usage:        "copy nftwarden-cni into the CNI bin directory and chain it last in the node's network configuration",
				OnUsageError: onUsageError,
				Flags: append([]cli.Flag{
					confDirFlag(),
					&cli.StringFlag{Name: flagCNIBinDir, Usage: "the runtime's CNI plugin `DIR`", Value: defaultCNIBinDir},
					&cli.StringFlag{Name: flagPluginBinary, Usage: "`PATH` of the nftwarden-cni binary to install", Value: defaultPluginBinary()},
					&cli.StringFlag{Name: flagPluginSocket, Usage: "the daemon's CNI socket `PATH` (run's --cni-socket)", Value: cniwire.DefaultSocket},
					&cli.DurationFlag{Name: flagPluginTimeout, Usage: "`DURATION` the plugin waits for the daemon at most (0: its default, 10s)"},
				}, logFlags()...),
				Action: func(c *cli.Context) error {
					log, err := env.cniLogger(c)
					if err != nil {
						return err
					}
					entry := cniconf.Entry{Socket: c.String(flagPluginSocket), Timeout: c.Duration(flagPluginTimeout)}
					if entry.Timeout < 0 {
						return usagef("cni install: --%s %v: must not be negative", flagPluginTimeout, entry.Timeout)
					}
					if !filepath.IsAbs(entry.Socket) {
						return usagef("cni install: --%s %q: want an absolute path", flagPluginSocket, entry.Socket)
					}
					file, err := cniconf.Install(c.String(flagConfDir), c.String(flagCNIBinDir), c.String(flagPluginBinary), entry)
					if err != nil {
						return err
					}
					log.Info("nftwarden-cni installed: new pods on this node start once the daemon has programmed them",
						"conflist", file, "binary", filepath.Join(c.String(flagCNIBinDir), cniconf.PluginType), "socket", entry.Socket)
					return nil
				},
			},
			{
				Name:         "uninstall",
				Usage:        "take nftwarden-cni out of the node's network configuration and remove its binary",
				OnUsageError: onUsageError,
				Flags: append([]cli.Flag{
					confDirFlag(),
					&cli.StringFlag{Name: flagCNIBinDir, Usage: "the runtime's CNI plugin `DIR` (empty: leave the binary)", Value: defaultCNIBinDir},
				}, logFlags()...),
				Action: func(c *cli.Context) error {
					log, err := env.cniLogger(c)
					if err != nil {
						return err
					}
					changed, err := cniconf.Uninstall(c.String(flagConfDir), c.String(flagCNIBinDir))
					if err != nil {
						return err
					}
					log.Info("nftwarden-cni uninstalled", "restored", changed)
					return nil
				},
			},
		},
	}
}

// cniLogger checks that a cni subcommand got no arguments and builds its
// logger.
func (env *cliEnv) cniLogger(c *cli.Context) (*slog.Logger, error) {
	if c.Args().Present() {
		return nil, usagef("cni %s: unexpected argument %q (all options are flags)", c.Command.Name, c.Args().First())
	}
	return env.logger(c)
}

// uninstallCNIPlugin takes nftwarden-cni out of the node's network
// configuration when the daemon is uninstalled: without the daemon every
// pod's ADD would fail and no pod could start on the node. Errors are
// logged; the caller goes on with its own cleanup.
func uninstallCNIPlugin(confDir string, log *slog.Logger) {
	if confDir == "" {
		return
	}
	changed, err := cniconf.Uninstall(confDir, "")
	if err != nil {
		log.Error(fmt.Sprintf("uninstalling, but taking nftwarden-cni out of the CNI configuration failed; run `nftwarden cni uninstall --conf-dir %s` on this node, or no pod can start here", confDir),
			"error", err)
		return
	}
	log.Info("uninstalled: nftwarden-cni taken out of the CNI configuration", "conf_dir", confDir, "restored", changed)
}
