package daemon

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// defaultVerdictLog is the configuration of the log flags left alone.
func defaultVerdictLog(format string) verdictLogConfig {
	return verdictLogConfig{Format: format, FileMaxSize: defaultLogFileMaxSize, FileMaxBacks: defaultLogFileMaxBackups,
		programConfig: programConfig{Rate: defaultLogRate, Burst: defaultLogBurst, Group: defaultLogGroup, Counters: true,
			FirstPacket: firstPacketConfig{On: true}},
		MetricsLimit: defaultPolicyMetricsLimit}
}

// clearVerdictLogEnv unsets the variables of the log flags for the test.
func clearVerdictLogEnv(t *testing.T) {
	for _, v := range []string{"NFTWARDEN_LOG_DENIED", "NFTWARDEN_LOG_ALLOWED", "NFTWARDEN_LOG_FILE", "NFTWARDEN_LOG_FILE_MAX_SIZE",
		"NFTWARDEN_LOG_FILE_MAX_BACKUPS", "NFTWARDEN_LOG_RATE", "NFTWARDEN_LOG_BURST", "NFTWARDEN_LOG_GROUP", "NFTWARDEN_AUDIT",
		"NFTWARDEN_POLICY_COUNTERS", "NFTWARDEN_POLICY_METRICS_LIMIT"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
}

// runFlags runs `nftwarden run --node-name n ARGS` with a clean environment
// plus env, and returns the configuration run was given (the test fails if
// the command did not run).
func runFlags(t *testing.T, args []string, env map[string]string) *runConfig {
	t.Helper()
	clearEnv(t)
	clearVerdictLogEnv(t)
	for k, v := range env {
		t.Setenv(k, v)
	}
	code, got, _, stderr := execCLI(t, append([]string{"run", "--node-name", "n"}, args...)...)
	if code != exitOK || got == nil {
		t.Fatalf("exit %d, ran %v; stderr:\n%s", code, got != nil, stderr)
	}
	return got
}

// runFlagsRefused checks that `nftwarden run --node-name n ARGS` is a usage
// error whose message contains wantErr.
func runFlagsRefused(t *testing.T, args []string, wantErr string) {
	t.Helper()
	clearEnv(t)
	clearVerdictLogEnv(t)
	code, ran, _, stderr := execCLI(t, append([]string{"run", "--node-name", "n"}, args...)...)
	if code != exitUsage || ran != nil {
		t.Errorf("exit %d (ran %v), want %d", code, ran != nil, exitUsage)
	}
	if !strings.Contains(stderr, wantErr) {
		t.Errorf("stderr does not contain %q:\n%s", wantErr, stderr)
	}
}

func TestVerdictLogFlags(t *testing.T) {
	tweak := func(f func(*verdictLogConfig)) verdictLogConfig {
		v := defaultVerdictLog(formatText)
		f(&v)
		return v
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want verdictLogConfig
	}{
		{name: "defaults: no log, counters on", want: defaultVerdictLog(formatText)},
		{
			name: "every flag",
			args: []string{"--log-denied", "--log-allowed", "--log-format", "json", "--log-file", "/var/log/nftwarden/verdicts.log",
				"--log-file-max-size", "10", "--log-file-max-backups", "0", "--log-rate", "20", "--log-burst", "5", "--log-group", "65535",
				"--audit", "--policy-counters=false", "--policy-metrics-limit", "7"},
			want: verdictLogConfig{Format: formatJSON, File: "/var/log/nftwarden/verdicts.log", FileMaxSize: 10, FileMaxBacks: 0,
				programConfig: programConfig{LogDenied: true, LogAllowed: true, Rate: 20, Burst: 5, Group: 65535, Audit: true, Counters: false,
					FirstPacket: firstPacketConfig{On: true}},
				MetricsLimit: 7},
		},
		{
			name: "environment",
			env:  map[string]string{"NFTWARDEN_LOG_DENIED": "true", "NFTWARDEN_AUDIT": "true", "NFTWARDEN_LOG_RATE": "1000", "NFTWARDEN_LOG_GROUP": "5"},
			want: tweak(func(v *verdictLogConfig) { v.LogDenied, v.Audit, v.Rate, v.Group = true, true, 1000, 5 }),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := runFlags(t, tc.args, tc.env)
			if diff := cmp.Diff(tc.want, got.VerdictLog, cmp.AllowUnexported(verdictLogConfig{})); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVerdictLogUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--log-rate", "0"}, "--log-rate 0: must be at least 1"},
		{[]string{"--log-group", "65536"}, "--log-group 65536: want 0-65535"},
		{[]string{"--log-burst", "4294967296"}, "--log-burst 4294967296: too large"},
		{[]string{"--log-file-max-size", "0"}, "--log-file-max-size 0: must be at least 1 MiB"},
		{[]string{"--log-file-max-backups", "-1"}, "--log-file-max-backups -1: must not be negative"},
		{[]string{"--policy-metrics-limit", "0"}, "--policy-metrics-limit 0: must be at least 1"},
		{[]string{"--log-rate", "-5"}, "invalid value"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			runFlagsRefused(t, tc.args, tc.wantErr)
		})
	}
}
