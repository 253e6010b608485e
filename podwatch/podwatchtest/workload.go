// Package podwatchtest generates the cluster that nftwarden's memory
// benchmarks load: namespaces team-NNNN of 100 pods with 10 NetworkPolicies
// each, and pods like Deployment replicas. integration/cmd/memload creates it
// in a real API server (scripts/bench-daemon-memory.sh); podwatch's
// BenchmarkMemoryPerPod feeds it in process. One generator, so the two
// figures measure the same objects. Addresses are in 198.18.0.0/15.
package podwatchtest

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// NamespaceName is the name of the i-th namespace.
func NamespaceName(i int) string { return fmt.Sprintf("team-%04d", i) }

// Namespace is the i-th namespace, with the labels the policies select on
// (and the name label the API server would add).
func Namespace(i int) *corev1.Namespace {
	name := NamespaceName(i)
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"kubernetes.io/metadata.name": name,
		"team":                        fmt.Sprintf("t%d", i%50),
		"env":                         []string{"prod", "staging", "dev"}[i%3],
	}}}
}

// Pod is a typical Deployment replica: an app container and a sidecar, with images,
// env, resources, probes, named ports, labels and annotations as a controller and
// admission would leave them; its status comes from
// PodStatus.
func Pod(ns string, i int, nodeName string) *corev1.Pod {
	app := fmt.Sprintf("app-%d", i%10)
	hash := fmt.Sprintf("%08x", uint32(i/10)*2654435761)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns,
			Name:      fmt.Sprintf("%s-%s-%05d", app, hash[:6], i),
			Labels: map[string]string{
				"app.kubernetes.io/name":    app,
				"app.kubernetes.io/part-of": "shop",
				"app.kubernetes.io/version": fmt.Sprintf("1.%d.0", i%7),
				"tier":                      []string{"frontend", "backend", "db"}[i%3],
				"pod-template-hash":         hash[:6],
				"security.example.com/zone": []string{"a", "b"}[i%2],
			},
			Annotations: map[string]string{
				"prometheus.io/scrape":                    "true",
				"prometheus.io/port":                      "9090",
				"kubectl.kubernetes.io/default-container": "app",
			},
		},
		Spec: corev1.PodSpec{
			NodeName: nodeName,
			Containers: []corev1.Container{
				{
					Name:  "app",
					Image: fmt.Sprintf("registry.example.com/shop/%s:1.%d.0", app, i%7),
					Args:  []string{"--listen=:8080", "--metrics=:9090", "--log-level=info"},
					Ports: []corev1.ContainerPort{
						{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
						{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
					},
					Env: []corev1.EnvVar{
						{Name: "APP_NAME", Value: app},
						{Name: "DATABASE_URL", Value: "postgres://db." + ns + ".svc:5432/shop"},
						{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
						{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
					},
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
						Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")},
					},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 10},
				},
				{
					Name:  "proxy",
					Image: "registry.example.com/infra/envoy:1.31.2",
					Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 15000, Protocol: corev1.ProtocolTCP}},
					Env:   []corev1.EnvVar{{Name: "ENVOY_UID", Value: "1337"}},
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
						Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
					},
				},
			},
		},
	}
}

// PodIP is the i-th address from 198.18.64.1 upward, skipping .0 and .255.
func PodIP(i int) netip.Addr {
	block, host := i/254, i%254+1
	return netip.AddrFrom4([4]byte{198, byte(18 + (64+block)/256), byte((64 + block) % 256), byte(host)})
}

// PodStatus is the status a kubelet writes for the i-th pod, running since created.
func PodStatus(i int, created metav1.Time) corev1.PodStatus {
	ip := PodIP(i).String()
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: created}}
	return corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    "198.18.0.1",
		HostIPs:   []corev1.HostIP{{IP: "198.18.0.1"}},
		PodIP:     ip,
		PodIPs:    []corev1.PodIP{{IP: ip}},
		StartTime: &created,
		QOSClass:  corev1.PodQOSBurstable,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: created},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: created},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: created},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: created},
		},
		ContainerStatuses: []corev1.ContainerStatus{
			{Name: "app", Ready: true, State: running, Image: "registry.example.com/shop/app", ImageID: "registry.example.com/shop/app@sha256:0f3a1b", ContainerID: fmt.Sprintf("containerd://%064x", i)},
			{Name: "proxy", Ready: true, State: running, Image: "registry.example.com/infra/envoy:1.31.2", ImageID: "registry.example.com/infra/envoy@sha256:9c1d2e", ContainerID: fmt.Sprintf("containerd://%064x", i+1<<40)},
		},
	}
}

// Policy is the k-th of a namespace's policies: a mix of what clusters use (default
// deny, allow from a tier, from other namespaces, named and numbered ports, egress to
// DNS and to an ipBlock with except).
func Policy(ns string, k int) *networkingv1.NetworkPolicy {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	port := func(p intstr.IntOrString, proto *corev1.Protocol) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Port: &p, Protocol: proto}
	}
	app := fmt.Sprintf("app-%d", k)
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("policy-%d", k)}}
	sel := metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": app}}
	switch k % 5 {
	case 0: // default deny ingress for the namespace
		np.Spec = networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}
	case 1: // from the frontend tier to a named port
		np.Spec = networkingv1.NetworkPolicySpec{PodSelector: sel, Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "frontend"}}}},
			Ports: []networkingv1.NetworkPolicyPort{port(intstr.FromString("http"), &tcp)},
		}}}
	case 2: // from monitoring namespaces to the metrics port
		np.Spec = networkingv1.NetworkPolicySpec{PodSelector: sel, Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod", "staging"}}}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"security.example.com/zone": "a"}},
			}},
			Ports: []networkingv1.NetworkPolicyPort{port(intstr.FromString("metrics"), &tcp), port(intstr.FromInt32(15000), &tcp)},
		}}}
	case 3: // egress to DNS and to a team's namespaces
		np.Spec = networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{Ports: []networkingv1.NetworkPolicyPort{port(intstr.FromInt32(53), &udp), port(intstr.FromInt32(53), &tcp)}},
				{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", k)}}}}},
			}}
	default: // egress to an external range with an exception, port range
		end := int32(8443)
		p := port(intstr.FromInt32(8000), &tcp)
		p.EndPort = &end
		np.Spec = networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "198.18.0.0/16", Except: []string{"198.18.1.0/24"}}}},
				Ports: []networkingv1.NetworkPolicyPort{p},
			}}}
	}
	return np
}
