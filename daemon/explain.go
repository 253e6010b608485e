package daemon

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// endpoint is one end of an explained flow: a pod (Namespace/Name) or an address.
type endpoint struct {
	Namespace, Name string
	Addr            netip.Addr
}

func (e endpoint) isPod() bool { return e.Name != "" }

func (e endpoint) String() string {
	if e.isPod() {
		return e.Namespace + "/" + e.Name
	}
	return e.Addr.String()
}

// parseEndpoint parses NAMESPACE/POD or an IPv4/IPv6 address.
func parseEndpoint(s string) (endpoint, error) {
	if _, err := netip.ParsePrefix(s); err == nil {
		return endpoint{}, fmt.Errorf("%q: want one IP address, not a prefix", s)
	}
	if ns, name, ok := strings.Cut(s, "/"); ok {
		if len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			return endpoint{}, fmt.Errorf("%q: want NAMESPACE/POD or an IP address", s)
		}
		return endpoint{Namespace: ns, Name: name}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return endpoint{}, fmt.Errorf("%q: want NAMESPACE/POD or an IP address", s)
	}
	return endpoint{Addr: a.Unmap()}, nil
}

// podIPs is what explain needs of the engine to resolve pods.
type podIPs interface {
	PodIPs(namespace, name string) ([]netip.Addr, bool)
}

// addresses resolves an endpoint to its addresses.
func addresses(eng podIPs, e endpoint) ([]netip.Addr, error) {
	if !e.isPod() {
		return []netip.Addr{e.Addr}, nil
	}
	ips, ok := eng.PodIPs(e.Namespace, e.Name)
	if !ok {
		return nil, fmt.Errorf("pod %s not found", e)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("pod %s has no IP address (not started yet, or finished)", e)
	}
	return ips, nil
}

// addressPairs pairs source and destination addresses of the same family, IPv4
// first: a dual-stack pair of pods is explained once per family.
func addressPairs(src, dst []netip.Addr) [][2]netip.Addr {
	var out [][2]netip.Addr
	for _, v4 := range []bool{true, false} {
		s, d := firstOfFamily(src, v4), firstOfFamily(dst, v4)
		if s.IsValid() && d.IsValid() {
			out = append(out, [2]netip.Addr{s, d})
		}
	}
	return out
}

func firstOfFamily(addrs []netip.Addr, v4 bool) netip.Addr {
	for _, a := range addrs {
		if a.Unmap().Is4() == v4 {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// label is how an address is shown: "ns/pod (ip)" for a pod, the address else.
func label(e endpoint, a netip.Addr) string {
	if e.isPod() {
		return fmt.Sprintf("%s (%s)", e, a)
	}
	return a.String()
}

// formatFlow writes one answer in readable, aligned text, with its trace.
func formatFlow(w io.Writer, f explainedFlow) {
	d := f.Decision
	verdict := "DENIED"
	if d.Allowed {
		verdict = "ALLOWED"
	}
	fmt.Fprintf(w, "flow:     %s -> %s, %s/%s\n", f.fromLabel(), f.toLabel(), f.Flow.Protocol, f.portLabel())
	fmt.Fprintf(w, "verdict:  %s\n", verdict)
	fmt.Fprintf(w, "egress:   %s\n", describeDirection(d.Egress, "source", "egress", f.Flow.Src))
	fmt.Fprintf(w, "ingress:  %s\n", describeDirection(d.Ingress, "destination", "ingress", f.Flow.Dst))
	for _, a := range []struct {
		dd       enforcer.DirectionDecision
		end, dir string
		addr     netip.Addr
	}{{d.Egress, "source", "egress", f.Flow.Src}, {d.Ingress, "destination", "ingress", f.Flow.Dst}} {
		if a.dd.Audit != nil {
			fmt.Fprintf(w, "audit:    %s would be %s; audit mode logs it and accepts\n",
				a.dir, describeDirection(*a.dd.Audit, a.end, a.dir, a.addr))
		}
	}
	if d.Reason != "" {
		fmt.Fprintf(w, "reason:   %s\n", d.Reason)
	}
	if f.Trace != nil {
		formatTrace(w, f.Trace, d)
	}
}

// formatTrace writes the kernel's path with its counters, the verdict of the
// table compiled for the node, and, loudly, a disagreement between them.
func formatTrace(w io.Writer, t *flowTrace, d enforcer.Decision) {
	tt := t.tables
	fmt.Fprintf(w, "trace:    first packet through the %s hook of node %s, table inet %s\n", nft.HookForward, tt.Node, tt.Table)
	if tt.KernelMissing {
		fmt.Fprintf(w, "kernel:   %s (the table does not exist on this node: nothing is enforced)\n", verdictWord(t.Kernel))
	} else {
		fmt.Fprintf(w, "kernel:   %s\n", verdictWord(t.Kernel))
	}
	for _, s := range t.KernelSteps {
		fmt.Fprintf(w, "          %s%s\n", s.Text, countersText(s.Counters))
	}
	fmt.Fprintf(w, "model:    %s (the table the cluster's objects compile to for node %s)\n", verdictWord(t.Expected), tt.Node)
	if !t.Agree() {
		fmt.Fprintf(w, "!!! DISAGREEMENT: the kernel's table %sS this flow, the model compiled for node %s %sS it.\n",
			verdictWord(t.Kernel), tt.Node, verdictWord(t.Expected))
		fmt.Fprintf(w, "!!! The kernel does not hold what the cluster's objects compile to: a change not yet programmed, a failed sync\n"+
			"!!! (nftwarden_errors_total{kind=\"dataplane\"}), or someone else's change; compare `nftwarden dump` with `nftwarden dump --desired`.\n")
		return
	}
	switch {
	case !d.Allowed && t.Expected.Accepted():
		fmt.Fprintf(w, "note:     this node's table accepts: the direction that denies is of a pod on another node, whose table drops the flow\n")
	case d.Allowed && !t.Expected.Accepted():
		fmt.Fprintf(w, "!!! The table compiled for node %s drops a flow the model allows: a bug of nftwarden's compiler; please report it.\n", tt.Node)
	}
}

// countersText shows the named counters a rule counts in: "  [counter x:
// 5 packets, 300 bytes]". The rule's own counter shows in its text already
// (`counter packets 5 bytes 300`).
func countersText(cs []ruleCounter) string {
	var b strings.Builder
	for _, c := range cs {
		if c.Name != "" {
			fmt.Fprintf(&b, "  [counter %s: %d packets, %d bytes]", c.Name, c.Packets, c.Bytes)
		}
	}
	return b.String()
}

// describeDirection says in plain words how one direction was decided. With
// ClusterNetworkPolicies in the model (a Tier, or Pass rules met) it is the
// chain of tiers that decided, e.g. "passed by admin policy x rule 0, then
// allowed by NetworkPolicy ns/y (ingress of ns/p)"; a NetworkPolicy-only
// model reads as it always did.
func describeDirection(dd enforcer.DirectionDecision, end, dir string, addr netip.Addr) string {
	switch {
	case dd.Unknown:
		return fmt.Sprintf("DENIED (the %s %s is in the node's pod CIDRs but is no known pod of this node: first-packet isolation drops it until its pod is programmed)", end, addr)
	case dd.Pod == "":
		return fmt.Sprintf("allowed (the %s %s is not a pod: no policy applies)", end, addr)
	case dd.Tier != "" || len(dd.Passes) > 0:
		return fmt.Sprintf("%s (%s of %s)", tierChain(dd), dir, directionSubject(dd))
	case !dd.Isolated:
		return fmt.Sprintf("allowed (%s is not isolated for %s: no policy applies)", dd.Pod, dir)
	case dd.Allowed:
		return fmt.Sprintf("allowed (%s is isolated for %s; allowed by %s)", dd.Pod, dir, strings.Join(dd.Policies, ", "))
	default:
		return fmt.Sprintf("DENIED (%s is isolated for %s by %s, and no rule of theirs allows this flow)",
			dd.Pod, dir, strings.Join(dd.Policies, ", "))
	}
}

// Tiers of enforcer.DirectionDecision.Tier.
const (
	tierAdmin         = "admin"
	tierNetworkPolicy = "networkpolicy"
	tierBaseline      = "baseline"
)

// tierChain is the path of one direction through the tiers: the Pass rules
// that ended a tier, then what decided (a ClusterNetworkPolicy rule,
// NetworkPolicies, or nothing: the default allow).
func tierChain(dd enforcer.DirectionDecision) string {
	steps := make([]string, 0, len(dd.Passes)+1)
	for _, p := range dd.Passes {
		steps = append(steps, "passed by "+p)
	}
	verdict := "DENIED"
	if dd.Allowed {
		verdict = "allowed"
	}
	var last string
	switch {
	case dd.Conflict && dd.Tier == tierNetworkPolicy:
		last = "DENIED: the claimants are selected by different NetworkPolicies (" + strings.Join(dd.Policies, ", ") + ")"
	case dd.Conflict:
		last = fmt.Sprintf("DENIED: the %s tier judges the claimants differently (%s)", dd.Tier, strings.Join(dd.Policies, "; "))
	case dd.Tier == tierAdmin || dd.Tier == tierBaseline:
		last = verdict + " by " + dd.Rule
	case dd.Tier == tierNetworkPolicy && dd.Allowed:
		last = "allowed by NetworkPolicy " + strings.Join(dd.Policies, ", ")
	case dd.Tier == tierNetworkPolicy:
		last = "DENIED by NetworkPolicy " + strings.Join(dd.Policies, ", ") + ": isolated, and no rule of theirs allows this flow"
	default:
		last = "allowed: no policy applies"
	}
	return strings.Join(append(steps, last), ", then ")
}

// directionSubject names the pod of a direction, or its claimants.
func directionSubject(dd enforcer.DirectionDecision) string {
	if len(dd.Claimants) > 1 {
		return "the address claimed by " + strings.Join(dd.Claimants, ", ")
	}
	return dd.Pod
}
