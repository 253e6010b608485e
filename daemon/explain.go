package daemon

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/nftwarden/nftwarden/enforcer"
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

// parsePort parses PORT[/PROTO] (PROTO: tcp, udp, sctp; default tcp).
func parsePort(s string) (corev1.Protocol, uint16, error) {
	num, proto, hasProto := strings.Cut(s, "/")
	p := corev1.ProtocolTCP
	if hasProto {
		switch strings.ToUpper(proto) {
		case "TCP":
			p = corev1.ProtocolTCP
		case "UDP":
			p = corev1.ProtocolUDP
		case "SCTP":
			p = corev1.ProtocolSCTP
		default:
			return "", 0, fmt.Errorf("%q: protocol must be tcp, udp or sctp", s)
		}
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("%q: want PORT/PROTO with PORT 1-65535, e.g. 8080/tcp", s)
	}
	return p, uint16(n), nil
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

// formatDecision writes one decision in readable, aligned text.
func formatDecision(w io.Writer, from, to string, f enforcer.Flow, d enforcer.Decision) {
	verdict := "DENIED"
	if d.Allowed {
		verdict = "ALLOWED"
	}
	fmt.Fprintf(w, "flow:     %s -> %s, %s/%d\n", from, to, f.Protocol, f.Port)
	fmt.Fprintf(w, "verdict:  %s\n", verdict)
	fmt.Fprintf(w, "egress:   %s\n", describeDirection(d.Egress, "source", "egress", f.Src))
	fmt.Fprintf(w, "ingress:  %s\n", describeDirection(d.Ingress, "destination", "ingress", f.Dst))
	if d.Reason != "" {
		fmt.Fprintf(w, "reason:   %s\n", d.Reason)
	}
}

// describeDirection says in plain words how one direction was decided. With
// ClusterNetworkPolicies in the model (a Tier, or Pass rules met) it is the
// chain of tiers that decided, e.g. "passed by admin policy x rule 0, then
// allowed by NetworkPolicy ns/y (ingress of ns/p)"; a NetworkPolicy-only
// model reads as it always did.
func describeDirection(dd enforcer.DirectionDecision, end, dir string, addr netip.Addr) string {
	switch {
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
