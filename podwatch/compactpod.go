package podwatch

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// compactPod is what the pod informer cache holds instead of a *corev1.Pod:
// exactly the fields the engine reads. Even stripped, a corev1.Pod costs about
// 1.5 KB of empty PodSpec and PodStatus structs per pod, which at 100k pods is
// most of the cache. client-go only needs object metadata of what a transform
// returns (keys, namespace index, delete handling), which the embedded
// ObjectMeta provides; toPod rebuilds the short-lived *corev1.Pod the engine
// takes when a key is applied.
type compactPod struct {
	// Only Name, Namespace, UID, ResourceVersion, Labels and
	// DeletionTimestamp are set (minimalMeta).
	metav1.ObjectMeta
	NodeName    string
	HostNetwork bool
	Phase       corev1.PodPhase
	PodIP       string
	PodIPs      []string
	// NamedPorts is the union of the named ports of the containers and the
	// restartable init containers, as TransformPod describes.
	NamedPorts []namedPort
}

// namedPort is the part of a corev1.ContainerPort a policy can refer to by name.
type namedPort struct {
	Name     string
	Port     int32
	Protocol corev1.Protocol
}

var _ runtime.Object = (*compactPod)(nil)

// GetObjectKind implements runtime.Object. The cache never needs the kind, and
// a TypeMeta would cost two strings per pod.
func (*compactPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (c *compactPod) DeepCopyObject() runtime.Object {
	out := *c
	c.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.PodIPs = slices.Clone(c.PodIPs)
	out.NamedPorts = slices.Clone(c.NamedPorts)
	return &out
}

// compactPodOf returns the compact form of p; it shares p's strings and labels
// map but nothing else, so p itself becomes garbage.
func compactPodOf(p *corev1.Pod) *compactPod {
	out := &compactPod{
		ObjectMeta:  minimalMeta(&p.ObjectMeta),
		NodeName:    p.Spec.NodeName,
		HostNetwork: p.Spec.HostNetwork,
		Phase:       p.Status.Phase,
		PodIP:       p.Status.PodIP,
	}
	if len(p.Status.PodIPs) > 0 {
		out.PodIPs = make([]string, len(p.Status.PodIPs))
		for i, ip := range p.Status.PodIPs {
			if ip.IP == out.PodIP {
				// podIP repeats podIPs[0]: keep one copy of the string.
				out.PodIPs[i] = out.PodIP
			} else {
				out.PodIPs[i] = ip.IP
			}
		}
	}
	// Policies refer to a pod's ports by name only through the union of the
	// named ports of its containers and restartable init containers (sidecars,
	// which keep serving). Keep exactly that union: numbered ports need no
	// declaration, and ordinary init containers have exited before the pod
	// serves.
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			out.NamedPorts = appendNamedPorts(out.NamedPorts, c.Ports)
		}
	}
	for i := range p.Spec.Containers {
		out.NamedPorts = appendNamedPorts(out.NamedPorts, p.Spec.Containers[i].Ports)
	}
	return out
}

func appendNamedPorts(dst []namedPort, ports []corev1.ContainerPort) []namedPort {
	for _, p := range ports {
		if p.Name != "" {
			dst = append(dst, namedPort{Name: p.Name, Port: p.ContainerPort, Protocol: p.Protocol})
		}
	}
	return dst
}

// toPod returns the minimal *corev1.Pod the engine takes, described at
// Transform. It shares c's labels map and strings: the engine only reads them.
func (c *compactPod) toPod() *corev1.Pod {
	out := &corev1.Pod{
		ObjectMeta: c.ObjectMeta,
		Spec: corev1.PodSpec{
			NodeName:    c.NodeName,
			HostNetwork: c.HostNetwork,
		},
		Status: corev1.PodStatus{
			Phase: c.Phase,
			PodIP: c.PodIP,
		},
	}
	if len(c.PodIPs) > 0 {
		out.Status.PodIPs = make([]corev1.PodIP, len(c.PodIPs))
		for i, ip := range c.PodIPs {
			out.Status.PodIPs[i] = corev1.PodIP{IP: ip}
		}
	}
	// One container with the union saves building one per original container;
	// the engine resolves port names against the union anyway.
	if len(c.NamedPorts) > 0 {
		ports := make([]corev1.ContainerPort, len(c.NamedPorts))
		for i, p := range c.NamedPorts {
			ports[i] = corev1.ContainerPort{Name: p.Name, ContainerPort: p.Port, Protocol: p.Protocol}
		}
		out.Spec.Containers = []corev1.Container{{Ports: ports}}
	}
	return out
}

// samePodForEngine reports whether two compact pods carry the same information
// for the engine (see sameForEngine).
func samePodForEngine(a, b *compactPod) bool {
	return sameMeta(&a.ObjectMeta, &b.ObjectMeta) &&
		a.NodeName == b.NodeName &&
		a.HostNetwork == b.HostNetwork &&
		a.Phase == b.Phase &&
		a.PodIP == b.PodIP &&
		slices.Equal(a.PodIPs, b.PodIPs) &&
		slices.Equal(a.NamedPorts, b.NamedPorts)
}
