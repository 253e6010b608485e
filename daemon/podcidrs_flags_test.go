package daemon

// Pod CIDRs: 198.18.4.0/24 and 2001:db8:4::/64 (node), 198.18.8.0/26 and
// 198.18.9.64/26 (blocks of a CNI's own IPAM).

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/urfave/cli/v2"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestFirstPacketFlags(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		want       firstPacketConfig
		wantSocket string
	}{
		{name: "defaults: on, CIDRs from the Node, the default socket", want: firstPacketConfig{On: true}, wantSocket: "/run/nftwarden/cni.sock"},
		{
			name:       "flags",
			args:       []string{"--pod-cidr", "198.18.4.0/24", "--pod-cidr", "2001:db8:4::/64", "--cni-socket", "/var/run/x/cni.sock"},
			want:       firstPacketConfig{On: true, PodCIDRs: prefixes("198.18.4.0/24", "2001:db8:4::/64")},
			wantSocket: "/var/run/x/cni.sock",
		},
		{
			name:       "several blocks of one family",
			args:       []string{"--pod-cidr", "198.18.8.0/26,198.18.9.64/26"},
			want:       firstPacketConfig{On: true, PodCIDRs: prefixes("198.18.8.0/26", "198.18.9.64/26")},
			wantSocket: "/run/nftwarden/cni.sock",
		},
		{
			name: "environment",
			env: map[string]string{"NFTWARDEN_POD_CIDRS": "198.18.4.0/24, 2001:db8:4::/64", "NFTWARDEN_FIRST_PACKET_ISOLATION": "false",
				"NFTWARDEN_CNI_SOCKET": ""},
			want: firstPacketConfig{On: false, PodCIDRs: prefixes("198.18.4.0/24", "2001:db8:4::/64")},
		},
		{
			name: "off, no socket",
			args: []string{"--first-packet-isolation=false", "--cni-socket", ""},
			want: firstPacketConfig{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := runFlags(t, tc.args, tc.env)
			if diff := cmp.Diff(tc.want, got.firstPacket(), cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
				t.Errorf("first-packet config (-want +got):\n%s", diff)
			}
			if got.CNISocket != tc.wantSocket {
				t.Errorf("CNI socket %q, want %q", got.CNISocket, tc.wantSocket)
			}
		})
	}
}

func TestFirstPacketUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--pod-cidr", "198.18.4.0"}, `--pod-cidr "198.18.4.0": want a CIDR`},
		{[]string{"--pod-cidr", "198.18.4.7/24"}, `--pod-cidr "198.18.4.7/24": host bits set (want 198.18.4.0/24)`},
		{[]string{"--pod-cidr", "2001:db8:4::1/64"}, "host bits set (want 2001:db8:4::/64)"},
		{[]string{"--cni-socket", "run/cni.sock"}, `--cni-socket "run/cni.sock": want an absolute path`},
		{[]string{"--cni-socket", "/" + strings.Repeat("s", 110)}, "want an absolute path of at most 103 bytes"},
		{[]string{"--first-packet-isolation=maybe"}, "invalid boolean value"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			runFlagsRefused(t, tc.args, tc.wantErr)
		})
	}
}

// TestFirstPacketFlagsShared: dump --desired and explain take the flags of
// first-packet isolation as run does, so that they compile what it programs.
func TestFirstPacketFlagsShared(t *testing.T) {
	app, _ := (&cliEnv{}).newApp()
	for _, cmd := range []string{"run", "dump", "explain"} {
		c := app.Command(cmd)
		if c == nil {
			t.Fatalf("no command %s", cmd)
		}
		for _, flag := range []string{flagFirstPacketIsolation, flagPodCIDR} {
			if !slices.ContainsFunc(c.Flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), flag) }) {
				t.Errorf("%s has no --%s", cmd, flag)
			}
		}
	}
	// They parse as programConfigFrom reads them for all three.
	var got programConfig
	app = &cli.App{Flags: programFlags(), Action: func(c *cli.Context) (err error) {
		got, err = programConfigFrom(c)
		return err
	}}
	clearEnv(t)
	clearVerdictLogEnv(t)
	if err := app.RunContext(context.Background(), []string{"x", "--pod-cidr", "198.18.4.0/24", "--first-packet-isolation=false"}); err != nil {
		t.Fatal(err)
	}
	want := firstPacketConfig{PodCIDRs: prefixes("198.18.4.0/24")}
	if diff := cmp.Diff(want, got.FirstPacket, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestExplainModelPodCIDRs: explain compiles first-packet isolation only for
// the node it traces; without --trace it answers for no node, where every
// address of the pod CIDRs would be unknown.
func TestExplainModelPodCIDRs(t *testing.T) {
	fp := firstPacketConfig{On: true, PodCIDRs: prefixes("198.18.4.0/24")}
	for _, tc := range []struct {
		trace    bool
		wantNode string
		want     []netip.Prefix
	}{
		{trace: true, wantNode: "node-a", want: fp.PodCIDRs},
		{trace: false},
	} {
		opts := explainOptions{Trace: tc.trace, Node: "node-a", Program: programConfig{FirstPacket: fp}}
		node, prog := opts.model()
		if node != tc.wantNode || !slices.Equal(prog.FirstPacket.PodCIDRs, tc.want) || !prog.FirstPacket.On {
			t.Errorf("trace %v: node %q, pod CIDRs %v; want %q, %v", tc.trace, node, prog.FirstPacket.PodCIDRs, tc.wantNode, tc.want)
		}
	}
	if len(fp.PodCIDRs) != 1 {
		t.Error("model changed the options' pod CIDRs")
	}
}
