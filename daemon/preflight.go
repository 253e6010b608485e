package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/nft"
)

// Start-up checks for setups in which nftwarden would run without enforcing
// what it seems to: each problem is logged once, as a warning, and exported as
// nftwarden_preflight_problem{check} = 1. None of them stops the daemon: the
// operator may know better (a bridge that carries no pod traffic, a second
// enforcer on purpose).
const (
	checkBridgeNetfilter = "bridge-netfilter"
	checkNodeObject      = "node-object"
	checkOtherEnforcer   = "other-enforcer"
)

var preflightChecks = []string{checkBridgeNetfilter, checkNodeObject, checkOtherEnforcer}

// preflightTimeout bounds the API request of the node check.
const preflightTimeout = 30 * time.Second

// preflight runs the checks and reports each result to set (true: a problem).
func (d *daemon) preflight(ctx context.Context, set func(check string, problem bool)) {
	report := func(check, problem string, err error, args ...any) {
		switch {
		case err != nil:
			d.log.Warn("preflight check could not run", append([]any{"check", check, "error", err}, args...)...)
		case problem != "":
			d.log.Warn("preflight: "+problem, append([]any{"check", check}, args...)...)
		}
		set(check, problem != "")
	}
	links, err := bridges()
	if err == nil {
		problem := bridgeBypass(links, readProcSys)
		report(checkBridgeNetfilter, problem, nil, "bridges", strings.Join(links, ","))
	} else {
		report(checkBridgeNetfilter, "", err)
	}

	inv, err := nft.Inventory()
	if err == nil {
		problem := otherEnforcers(inv, d.cfg.Table)
		report(checkOtherEnforcer, problem, nil)
	} else {
		report(checkOtherEnforcer, "", err)
	}

	nctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	_, err = d.client.CoreV1().Nodes().Get(nctx, d.cfg.NodeName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		report(checkNodeObject, fmt.Sprintf("no Node object is named %q: no pod will ever be local to this daemon, "+
			"so it enforces nothing (set --node-name or NODE_NAME to the name the kubelet registered)", d.cfg.NodeName), nil)
	case ctx.Err() != nil:
	case err != nil:
		report(checkNodeObject, "", err, "node", d.cfg.NodeName)
	default:
		report(checkNodeObject, "", nil)
	}
}

// bridges lists the Linux bridges of the network namespace.
func bridges() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var names []string
	for _, l := range links {
		if l.Type() == "bridge" {
			names = append(names, l.Attrs().Name)
		}
	}
	return names, nil
}

// readProcSys reads a sysctl of the current network namespace, e.g.
// "net/bridge/bridge-nf-call-iptables".
func readProcSys(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", name))
	return strings.TrimSpace(string(b)), err
}

// bridgeBypass says why traffic between pods on one of the bridges would not
// reach the forward hook, or "" if it would. Bridged frames go through the
// inet family's hooks only with br_netfilter loaded and its
// bridge-nf-call-iptables/ip6tables sysctls on (per network namespace).
func bridgeBypass(bridges []string, sysctl func(string) (string, error)) string {
	if len(bridges) == 0 {
		return ""
	}
	var off []string
	for _, s := range []string{"net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables"} {
		v, err := sysctl(s)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Sprintf("bridge %s exists but br_netfilter is not loaded: traffic between pods on one bridge "+
				"is not filtered (modprobe br_netfilter)", bridges[0])
		}
		if err == nil && v == "0" {
			off = append(off, strings.ReplaceAll(s, "/", ".")+"=0")
		}
	}
	if len(off) == 0 {
		return ""
	}
	return fmt.Sprintf("bridge %s exists but %s: traffic between pods on one bridge is not filtered "+
		"(set it to 1)", bridges[0], strings.Join(off, " and "))
}

// enforcerMarkers are tables and chain name prefixes that other network
// policy enforcers create, as nftables sees them (iptables-nft rules appear
// as chains of the ip/ip6 "filter" tables; iptables-legacy rules are not
// visible here).
var enforcerMarkers = []struct {
	table, chainPrefix, name string
}{
	{table: "kube-network-policies", name: "kube-network-policies"},
	{table: "calico", name: "Calico (nftables mode)"},
	{chainPrefix: "cali-", name: "Calico (iptables mode)"},
	{chainPrefix: "KUBE-ROUTER-", name: "kube-router"},
	{chainPrefix: "KUBE-NWPLCY-", name: "kube-router"},
	{chainPrefix: "CILIUM_", name: "Cilium"},
	{chainPrefix: "WEAVE-NPC", name: "Weave Net"},
	{chainPrefix: "ANTREA-", name: "Antrea"},
}

// otherEnforcers says which other enforcers' rules the inventory holds, or "".
// Policy is then enforced twice, and a connection passes only if both allow
// it: fine on purpose, confusing by accident.
func otherEnforcers(inv []nft.ChainRef, ourTable string) string {
	var found []string
	seen := map[string]bool{}
	for _, ref := range inv {
		if ref.Table == ourTable && ref.Family == "inet" {
			continue
		}
		for _, m := range enforcerMarkers {
			hit := (m.table != "" && ref.Chain == "" && ref.Table == m.table) ||
				(m.chainPrefix != "" && strings.HasPrefix(ref.Chain, m.chainPrefix))
			if hit && !seen[m.name] {
				seen[m.name] = true
				where := "table " + ref.Family + " " + ref.Table
				if ref.Chain != "" {
					where += " chain " + ref.Chain
				}
				found = append(found, fmt.Sprintf("%s (%s)", m.name, where))
			}
		}
	}
	if len(found) == 0 {
		return ""
	}
	return "rules of another network policy enforcer are present: " + strings.Join(found, ", ") +
		"; a connection now passes only if every enforcer allows it"
}
