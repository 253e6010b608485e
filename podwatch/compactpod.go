package podwatch

import (
	"slices"
	"strings"
	"unique"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// compactPod is what the pod informer cache holds instead of a *corev1.Pod:
// exactly the fields the engine reads. Even stripped, a corev1.Pod costs about
// 1.5 KB of empty PodSpec and PodStatus structs per pod, which at 100k pods is
// most of the cache. client-go only needs object metadata of what a transform
// returns (keys, namespace index, delete handling), which the embedded
// podMeta provides; toPod rebuilds the short-lived *corev1.Pod the engine
// takes when a key is applied.
//
// Strings that many pods repeat (label keys and values, node names, port
// names and protocols) are interned as unique.Handle values: the decoder
// allocates every string of every pod anew, and a handle is half the size of
// a string header. The canonical string lives as long as some pod holds its
// handle, so values that go out of use (old pod-template-hash labels) do not
// pile up. The engine's strings point to the same canonical bytes.
type compactPod struct {
	podMeta
	Labels   labelSet
	NodeName unique.Handle[string]
	Phase    corev1.PodPhase
	PodIP    string
	PodIPs   []string
	// NamedPorts is the union of the named ports of the containers and the
	// restartable init containers, as TransformPod describes.
	NamedPorts  []namedPort
	HostNetwork bool
}

// labelSet is a pod's labels, interned and sorted by key: 16 bytes a label
// instead of a map slot and two strings.
type labelSet []label

type label struct{ Key, Value unique.Handle[string] }

func makeLabelSet(m map[string]string) labelSet {
	if len(m) == 0 {
		return nil
	}
	l := make(labelSet, 0, len(m))
	for k, v := range m {
		l = append(l, label{unique.Make(k), unique.Make(v)})
	}
	slices.SortFunc(l, func(a, b label) int { return strings.Compare(a.Key.Value(), b.Key.Value()) })
	return l
}

// toMap returns the labels as a map with the canonical strings.
func (l labelSet) toMap() map[string]string {
	if l == nil {
		return nil
	}
	m := make(map[string]string, len(l))
	for _, kv := range l {
		m[kv.Key.Value()] = kv.Value.Value()
	}
	return m
}

// namedPort is the part of a corev1.ContainerPort a policy can refer to by name.
type namedPort struct {
	Name     unique.Handle[string]
	Protocol unique.Handle[corev1.Protocol]
	Port     int32
}

var _ runtime.Object = (*compactPod)(nil)

// GetObjectKind implements runtime.Object. The cache never needs the kind, and
// a TypeMeta would cost two strings per pod.
func (*compactPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (c *compactPod) DeepCopyObject() runtime.Object {
	out := *c
	out.podMeta = c.podMeta.deepCopy()
	out.Labels = slices.Clone(c.Labels)
	out.PodIPs = slices.Clone(c.PodIPs)
	out.NamedPorts = slices.Clone(c.NamedPorts)
	return &out
}

// compactPodOf returns the compact form of p; it shares some of p's strings
// (name, UID, IPs) but nothing else, so p itself becomes garbage.
func compactPodOf(p *corev1.Pod) *compactPod {
	out := &compactPod{
		podMeta:     podMetaOf(&p.ObjectMeta),
		Labels:      makeLabelSet(p.Labels),
		NodeName:    unique.Make(p.Spec.NodeName),
		HostNetwork: p.Spec.HostNetwork,
		Phase:       internPhase(p.Status.Phase),
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
			dst = append(dst, namedPort{Name: unique.Make(p.Name), Protocol: unique.Make(p.Protocol), Port: p.ContainerPort})
		}
	}
	return dst
}

// internPhase returns the package constant for a known phase, so that pods
// share its string.
func internPhase(p corev1.PodPhase) corev1.PodPhase {
	for _, known := range []corev1.PodPhase{corev1.PodRunning, corev1.PodPending, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown} {
		if p == known {
			return known
		}
	}
	return p
}

// toPod returns the minimal *corev1.Pod the engine takes, described at
// Transform. It shares c's strings (the engine only reads them); its labels
// map is new.
func (c *compactPod) toPod() *corev1.Pod {
	out := &corev1.Pod{
		ObjectMeta: c.objectMeta(),
		Spec: corev1.PodSpec{
			NodeName:    c.NodeName.Value(),
			HostNetwork: c.HostNetwork,
		},
		Status: corev1.PodStatus{
			Phase: c.Phase,
			PodIP: c.PodIP,
		},
	}
	out.Labels = c.Labels.toMap()
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
			ports[i] = corev1.ContainerPort{Name: p.Name.Value(), ContainerPort: p.Port, Protocol: p.Protocol.Value()}
		}
		out.Spec.Containers = []corev1.Container{{Ports: ports}}
	}
	return out
}

// samePodForEngine reports whether two compact pods carry the same information
// for the engine (see sameForEngine).
func samePodForEngine(a, b *compactPod) bool {
	return a.UID == b.UID &&
		(a.DeletionTimestamp == nil) == (b.DeletionTimestamp == nil) &&
		slices.Equal(a.Labels, b.Labels) &&
		a.NodeName == b.NodeName &&
		a.HostNetwork == b.HostNetwork &&
		a.Phase == b.Phase &&
		a.PodIP == b.PodIP &&
		slices.Equal(a.PodIPs, b.PodIPs) &&
		slices.Equal(a.NamedPorts, b.NamedPorts)
}
