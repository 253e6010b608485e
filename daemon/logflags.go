package daemon

import (
	"math"

	"github.com/urfave/cli/v2"

	"github.com/nftwarden/nftwarden/enforcer"
)

// Flags of the deny/flow log, audit mode and the per-policy counters
// (`nftwarden run`). The line format is the daemon's --log-format: one flag
// says how everything the daemon writes looks.
const (
	flagLogDenied          = "log-denied"
	flagLogAllowed         = "log-allowed"
	flagLogFile            = "log-file"
	flagLogFileMaxSize     = "log-file-max-size"
	flagLogFileMaxBackups  = "log-file-max-backups"
	flagLogRate            = "log-rate"
	flagLogBurst           = "log-burst"
	flagLogGroup           = "log-group"
	flagAudit              = "audit"
	flagPolicyCounters     = "policy-counters"
	flagPolicyMetricsLimit = "policy-metrics-limit"
)

// Defaults of the flags above.
const (
	defaultLogRate            = 100
	defaultLogBurst           = 200
	defaultLogGroup           = 100
	defaultLogFileMaxSize     = 100 // MiB
	defaultLogFileMaxBackups  = 5
	defaultPolicyMetricsLimit = 100
)

// programConfig is what the flags that shape the compiled program configure:
// the log rules, their limit and group, audit mode and the named counters.
// run, dump --desired and explain take the same flags (programFlags), so
// that what the last two compile is what the daemon programs.
type programConfig struct {
	LogDenied, LogAllowed bool
	// Rate (packets per second, per node) and Burst limit the kernel's
	// copies; Group is the NFLOG group.
	Rate  uint64
	Burst uint32
	Group uint16
	// Audit puts every policy of the node in audit mode.
	Audit bool
	// Counters gives policies named counters.
	Counters bool
	// FirstPacket configures first-packet isolation (podcidrs_flags.go).
	FirstPacket firstPacketConfig
}

// verdictLogConfig is what run's flags of the deny/flow log, audit mode and
// the per-policy counters configure: the program's part and the writer's.
type verdictLogConfig struct {
	programConfig
	// Format is formatText or formatJSON (--log-format).
	Format string
	// File is the log's path; "" writes to standard output.
	File                      string
	FileMaxSize, FileMaxBacks int
	// MetricsLimit: the counters are exported as
	// nftwarden_policy_{packets,bytes}_total for the MetricsLimit policies
	// with most packets.
	MetricsLimit int
}

// programFlags are the flags of programConfig.
func programFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.BoolFlag{Name: flagLogDenied, EnvVars: []string{"NFTWARDEN_LOG_DENIED"},
			Usage: "write a line for every new connection that policy drops (the pods, the policy or rule, the reason); the drop still happens"},
		&cli.BoolFlag{Name: flagLogAllowed, EnvVars: []string{"NFTWARDEN_LOG_ALLOWED"},
			Usage: "write a line for every new connection that policy allows (the flow log), at the same rate limit"},
		&cli.Uint64Flag{Name: flagLogRate, Value: defaultLogRate, EnvVars: []string{"NFTWARDEN_LOG_RATE"},
			Usage: "log at most `N` packets per second on this node (the kernel's limit; more are dropped as ever, unlogged)"},
		&cli.UintFlag{Name: flagLogBurst, Value: defaultLogBurst, EnvVars: []string{"NFTWARDEN_LOG_BURST"},
			Usage: "log up to `N` packets at once above --log-rate"},
		&cli.UintFlag{Name: flagLogGroup, Value: defaultLogGroup, EnvVars: []string{"NFTWARDEN_LOG_GROUP"},
			Usage: "NFLOG `GROUP` the log rules copy packets to (one reader per group and node)"},
		&cli.BoolFlag{Name: flagAudit, EnvVars: []string{"NFTWARDEN_AUDIT"},
			Usage: "audit mode for every policy on this node: what policy would drop is logged as would-deny and accepted " +
				"(a policy annotated nftwarden.io/enforcement=audit is in audit mode alone)"},
		&cli.BoolFlag{Name: flagPolicyCounters, Value: true, EnvVars: []string{"NFTWARDEN_POLICY_COUNTERS"},
			Usage: "count the new connections each policy allows and denies (nftables named counters) and export them on /metrics"},
	}, firstPacketFlags()...)
}

// verdictLogFlags are run's flags of verdictLogConfig.
func verdictLogFlags() []cli.Flag {
	return append(programFlags(),
		&cli.StringFlag{Name: flagLogFile, EnvVars: []string{"NFTWARDEN_LOG_FILE"},
			Usage: "write the deny/flow log to `PATH`, rotated by size (default: standard output)"},
		&cli.IntFlag{Name: flagLogFileMaxSize, Value: defaultLogFileMaxSize, EnvVars: []string{"NFTWARDEN_LOG_FILE_MAX_SIZE"},
			Usage: "rotate --log-file when it reaches `MIB` mebibytes"},
		&cli.IntFlag{Name: flagLogFileMaxBackups, Value: defaultLogFileMaxBackups, EnvVars: []string{"NFTWARDEN_LOG_FILE_MAX_BACKUPS"},
			Usage: "keep `N` rotated files of --log-file (0 keeps all)"},
		&cli.IntFlag{Name: flagPolicyMetricsLimit, Value: defaultPolicyMetricsLimit, EnvVars: []string{"NFTWARDEN_POLICY_METRICS_LIMIT"},
			Usage: "export the per-policy counters of the `N` policies with most packets; the others are summed as policy=\"_other\""},
	)
}

// programConfigFrom reads and checks the flags of programFlags.
func programConfigFrom(c *cli.Context) (programConfig, error) {
	v := programConfig{
		LogDenied:  c.Bool(flagLogDenied),
		LogAllowed: c.Bool(flagLogAllowed),
		Rate:       c.Uint64(flagLogRate),
		Audit:      c.Bool(flagAudit),
		Counters:   c.Bool(flagPolicyCounters),
	}
	burst, group := c.Uint(flagLogBurst), c.Uint(flagLogGroup)
	switch {
	case v.Rate == 0:
		return v, usagef("--%s 0: must be at least 1 (turn the log off with --%s=false and --%s=false)", flagLogRate, flagLogDenied, flagLogAllowed)
	case burst > math.MaxUint32:
		return v, usagef("--%s %d: too large", flagLogBurst, burst)
	case group > math.MaxUint16:
		return v, usagef("--%s %d: want 0-65535", flagLogGroup, group)
	}
	v.Burst, v.Group = uint32(burst), uint16(group)
	var err error
	v.FirstPacket, err = firstPacketConfigFrom(c)
	return v, err
}

// verdictLogConfigFrom reads and checks the flags of verdictLogFlags.
func verdictLogConfigFrom(c *cli.Context) (verdictLogConfig, error) {
	prog, err := programConfigFrom(c)
	v := verdictLogConfig{
		programConfig: prog,
		Format:        c.String(flagLogFormat),
		File:          c.String(flagLogFile),
		FileMaxSize:   c.Int(flagLogFileMaxSize),
		FileMaxBacks:  c.Int(flagLogFileMaxBackups),
		MetricsLimit:  c.Int(flagPolicyMetricsLimit),
	}
	switch {
	case err != nil:
		return v, err
	case v.FileMaxSize < 1:
		return v, usagef("--%s %d: must be at least 1 MiB", flagLogFileMaxSize, v.FileMaxSize)
	case v.FileMaxBacks < 0:
		return v, usagef("--%s %d: must not be negative", flagLogFileMaxBackups, v.FileMaxBacks)
	case v.MetricsLimit < 1:
		return v, usagef("--%s %d: must be at least 1", flagPolicyMetricsLimit, v.MetricsLimit)
	}
	return v, nil
}

// engineConfig sets the engine's log, audit and counter settings: the
// program's log rules, their limit and group, and its named counters; and
// the pod CIDRs of first-packet isolation when given by flag (run reads
// the Node's otherwise: podcidrs.go).
func (v programConfig) engineConfig(c *enforcer.Config) {
	c.LogGroup, c.LogDenied, c.LogAllowed = v.Group, v.LogDenied, v.LogAllowed
	c.LogRate, c.LogBurst = v.Rate, v.Burst
	c.Audit, c.Counters = v.Audit, v.Counters
	if v.FirstPacket.On {
		c.PodCIDRs = v.FirstPacket.PodCIDRs
	}
}
