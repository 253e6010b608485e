package daemon

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/nftwarden/nftwarden/podwatch"
)

// portSpec is a parsed --port of explain: one port, a range of ports, or a
// port name, with a protocol.
//
//	8080, 8080/tcp   one port (the protocol defaults to tcp)
//	8000-8100/udp    a range, both ends included
//	http, http/tcp   a name, resolved on the destination pod's container ports
//	                 (its containers and restartable init containers, as
//	                 NetworkPolicy resolves named ports), for the protocol
type portSpec struct {
	Protocol corev1.Protocol
	From, To uint16 // From == To for one port; 0 for a name until resolved
	Name     string
}

// parsePort parses PORT[/PROTO], FROM-TO[/PROTO] or NAME[/PROTO] (PROTO: tcp,
// udp, sctp; default tcp).
func parsePort(s string) (portSpec, error) {
	num, proto, hasProto := strings.Cut(s, "/")
	spec := portSpec{Protocol: corev1.ProtocolTCP}
	if hasProto {
		switch strings.ToUpper(proto) {
		case "TCP":
			spec.Protocol = corev1.ProtocolTCP
		case "UDP":
			spec.Protocol = corev1.ProtocolUDP
		case "SCTP":
			spec.Protocol = corev1.ProtocolSCTP
		default:
			return portSpec{}, fmt.Errorf("%q: protocol must be tcp, udp or sctp", s)
		}
	}
	bad := fmt.Errorf("%q: want PORT, FROM-TO or a port NAME, then /PROTO: e.g. 8080/tcp, 8000-8100/tcp, http/tcp (PORT 1-65535)", s)
	if from, to, isRange := strings.Cut(num, "-"); isRange && from != "" && from[0] >= '0' && from[0] <= '9' {
		f, ferr := portNumber(from)
		t, terr := portNumber(to)
		if ferr != nil || terr != nil || f > t {
			return portSpec{}, bad
		}
		spec.From, spec.To = f, t
		return spec, nil
	}
	if num != "" && num[0] >= '0' && num[0] <= '9' {
		n, err := portNumber(num)
		if err != nil {
			return portSpec{}, bad
		}
		spec.From, spec.To = n, n
		return spec, nil
	}
	// A name as a container port has it (IANA_SVC_NAME, as policies use).
	if len(validation.IsValidPortName(num)) > 0 {
		return portSpec{}, bad
	}
	spec.Name = num
	return spec, nil
}

func portNumber(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q: want 1-65535", s)
	}
	return uint16(n), nil
}

// String is the spec as explain prints it: TCP/8080, TCP/8000-8100 or
// TCP/http.
func (p portSpec) String() string {
	switch {
	case p.Name != "" && p.From == 0:
		return fmt.Sprintf("%s/%s", p.Protocol, p.Name)
	case p.From == p.To:
		return fmt.Sprintf("%s/%d", p.Protocol, p.From)
	}
	return fmt.Sprintf("%s/%d-%d", p.Protocol, p.From, p.To)
}

// resolvePortName returns the number of the container port named name with
// protocol proto of pod: among its containers' and restartable init
// containers' named ports, as policy resolves a named port
// (podwatch.TransformPod gathers exactly those).
func resolvePortName(pod *corev1.Pod, name string, proto corev1.Protocol) (uint16, error) {
	var names []string
	for _, c := range podwatch.TransformPod(pod).Spec.Containers {
		for _, cp := range c.Ports {
			p := cp.Protocol
			if p == "" {
				p = corev1.ProtocolTCP
			}
			if cp.Name == name && p == proto {
				return uint16(cp.ContainerPort), nil
			}
			names = append(names, fmt.Sprintf("%s (%s/%d)", cp.Name, p, cp.ContainerPort))
		}
	}
	if len(names) == 0 {
		return 0, fmt.Errorf("pod %s/%s has no named container port", pod.Namespace, pod.Name)
	}
	return 0, fmt.Errorf("pod %s/%s has no %s port named %q; its named ports: %s", pod.Namespace, pod.Name, proto, name, strings.Join(names, ", "))
}
