package podwatch

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/enforcer"
)

// Transform is the informer transform (cache.TransformFunc) for the objects
// podwatch watches. It returns a new, minimal object holding only what the engine
// reads, so that everything else (managed fields, annotations, most of spec and
// status) becomes garbage before the object enters the informer cache:
//
//   - every kind: name, namespace, UID, resourceVersion, labels, deletionTimestamp
//     and deletionGracePeriodSeconds, and the time of the object's last change
//     (changetime.go) as its one managed fields entry, which holds nothing else;
//   - Pod: spec.nodeName, spec.hostNetwork, status.phase, status.podIP(s), and
//     the named ports (name, number, protocol) of its containers and restartable
//     init containers (restartPolicy Always: sidecars), merged into one
//     container, since policies resolve a port name against their union;
//   - NetworkPolicy and ClusterNetworkPolicy: the whole spec, and the
//     annotation nftwarden.io/enforcement (audit mode) if set;
//   - Node (watched with Options.Nodes): its InternalIP and ExternalIP
//     addresses (status.addresses).
//
// Namespaces and policies stay their own types. A pod becomes an unexported
// compact type: its metadata and those fields parsed by the engine
// (enforcer.NewPod), which the watcher hands to the engine as they are, so the
// cache and the engine's model share one copy of each pod. TransformPod shows
// those fields as a *corev1.Pod.
// Other values (cache.DeletedFinalStateUnknown and unknown types) are returned
// unchanged. Transform is idempotent, as client-go requires.
func Transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return compactPodOf(o), nil
	case *corev1.Namespace:
		return TransformNamespace(o), nil
	case *networkingv1.NetworkPolicy:
		return TransformNetworkPolicy(o), nil
	case *v1beta1.ClusterNetworkPolicy:
		return TransformClusterNetworkPolicy(o), nil
	case *corev1.Node:
		return TransformNode(o), nil
	}
	return obj, nil
}

// minimalMeta keeps of m what every kind keeps (see Transform); changed is
// the time of the object's last change (apiChangeTime, podChangeTime).
func minimalMeta(m *metav1.ObjectMeta, changed time.Time) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:                       m.Name,
		Namespace:                  m.Namespace,
		UID:                        m.UID,
		ResourceVersion:            m.ResourceVersion,
		Labels:                     m.Labels,
		DeletionTimestamp:          m.DeletionTimestamp,
		DeletionGracePeriodSeconds: m.DeletionGracePeriodSeconds,
		ManagedFields:              changeStamp(changed),
	}
}

// policyMeta is minimalMeta of a policy, with its enforcement annotation
// (enforcer.EnforcementAnnotation: audit mode).
func policyMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	out := minimalMeta(m, apiChangeTime(m))
	if v, ok := m.Annotations[enforcer.EnforcementAnnotation]; ok {
		out.Annotations = map[string]string{enforcer.EnforcementAnnotation: v}
	}
	return out
}

// TransformPod returns the minimal pod described at Transform: what the
// engine reads of p (enforcer.NewPod of it equals that of p). The informer
// cache holds the engine's parsed form instead (compactPod).
func TransformPod(p *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{
		ObjectMeta: minimalMeta(&p.ObjectMeta, podChangeTime(p)),
		Spec: corev1.PodSpec{
			NodeName:    p.Spec.NodeName,
			HostNetwork: p.Spec.HostNetwork,
		},
		Status: corev1.PodStatus{
			Phase:  p.Status.Phase,
			PodIP:  p.Status.PodIP,
			PodIPs: p.Status.PodIPs,
		},
	}
	// Policies refer to a pod's ports by name only through the union of the
	// named ports of its containers and restartable init containers (sidecars,
	// which keep serving): one container with that union. Numbered ports need
	// no declaration, and ordinary init containers have exited before the pod
	// serves.
	var ports []corev1.ContainerPort
	add := func(c *corev1.Container) {
		for _, cp := range c.Ports {
			if cp.Name != "" {
				ports = append(ports, corev1.ContainerPort{Name: cp.Name, ContainerPort: cp.ContainerPort, Protocol: cp.Protocol})
			}
		}
	}
	for i := range p.Spec.InitContainers {
		if c := &p.Spec.InitContainers[i]; c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			add(c)
		}
	}
	for i := range p.Spec.Containers {
		add(&p.Spec.Containers[i])
	}
	if len(ports) > 0 {
		out.Spec.Containers = []corev1.Container{{Ports: ports}}
	}
	return out
}

// TransformNamespace returns the minimal copy of ns: its metadata (labels).
func TransformNamespace(ns *corev1.Namespace) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: minimalMeta(&ns.ObjectMeta, apiChangeTime(&ns.ObjectMeta))}
}

// TransformNetworkPolicy returns the minimal copy of np: its metadata
// (with the enforcement annotation) and spec.
func TransformNetworkPolicy(np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: policyMeta(&np.ObjectMeta), Spec: np.Spec}
}

// TransformClusterNetworkPolicy returns the minimal copy of cnp: its metadata
// (with the enforcement annotation) and spec (its status, conditions written
// by other implementations, is not read).
func TransformClusterNetworkPolicy(cnp *v1beta1.ClusterNetworkPolicy) *v1beta1.ClusterNetworkPolicy {
	return &v1beta1.ClusterNetworkPolicy{ObjectMeta: policyMeta(&cnp.ObjectMeta), Spec: cnp.Spec}
}

// sameForEngine reports whether two transformed versions of one object carry the
// same information for the engine, so that an update that only bumped the
// resourceVersion (kubelet status heartbeats, relists) is not queued.
func sameForEngine(oldObj, newObj any) bool {
	switch o := oldObj.(type) {
	case *compactPod:
		n, ok := newObj.(*compactPod)
		return ok && samePodForEngine(o, n)
	case *corev1.Namespace:
		n, ok := newObj.(*corev1.Namespace)
		return ok && sameMeta(&o.ObjectMeta, &n.ObjectMeta)
	case *networkingv1.NetworkPolicy:
		n, ok := newObj.(*networkingv1.NetworkPolicy)
		return ok && samePolicyMeta(&o.ObjectMeta, &n.ObjectMeta) &&
			equality.Semantic.DeepEqual(o.Spec, n.Spec)
	case *v1beta1.ClusterNetworkPolicy:
		n, ok := newObj.(*v1beta1.ClusterNetworkPolicy)
		return ok && samePolicyMeta(&o.ObjectMeta, &n.ObjectMeta) &&
			equality.Semantic.DeepEqual(o.Spec, n.Spec)
	}
	return false
}

func sameMeta(a, b *metav1.ObjectMeta) bool {
	return a.UID == b.UID &&
		equality.Semantic.DeepEqual(a.Labels, b.Labels) &&
		(a.DeletionTimestamp == nil) == (b.DeletionTimestamp == nil)
}

// samePolicyMeta is sameMeta of policies, which also compares their
// enforcement annotation (audit or enforced).
func samePolicyMeta(a, b *metav1.ObjectMeta) bool {
	return sameMeta(a, b) && a.Annotations[enforcer.EnforcementAnnotation] == b.Annotations[enforcer.EnforcementAnnotation]
}

// TransformNode returns the minimal node described at Transform: what the
// nodes peers of ClusterNetworkPolicy match (enforcer.Engine.UpsertNode).
func TransformNode(n *corev1.Node) *corev1.Node {
	out := &corev1.Node{ObjectMeta: minimalMeta(&n.ObjectMeta, apiChangeTime(&n.ObjectMeta))}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			out.Status.Addresses = append(out.Status.Addresses, a)
		}
	}
	return out
}
