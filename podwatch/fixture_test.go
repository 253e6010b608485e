package podwatch

// IP plan of the podwatch tests (TEST-NET 198.18.0.0/15 and 2001:db8::/32 only):
//
//	node "node-a" (local)   pods 198.18.0.0/24,  2001:db8:a::/64
//	node "node-b" (remote)  pods 198.18.1.0/24,  2001:db8:b::/64
//
// Namespaces: "frontend" (team=web), "backend" (team=api).
// Benchmarks number pods 198.18.x.y / 198.19.x.y, unique per pod.

import (
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
)

const (
	localNode  = "node-a"
	remoteNode = "node-b"
)

func namespace(name string, tweaks ...func(*corev1.Namespace)) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		UID:    types.UID("uid-ns-" + name),
		Labels: map[string]string{"kubernetes.io/metadata.name": name},
	}}
	for _, t := range tweaks {
		t(ns)
	}
	return ns
}

func nsLabel(k, v string) func(*corev1.Namespace) {
	return func(ns *corev1.Namespace) { ns.Labels[k] = v }
}

// pod returns a running pod with one container port "http" 8080/TCP.
func pod(ns, name, node string, ips []string, tweaks ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns,
			Name:      name,
			UID:       types.UID("uid-pod-" + ns + "-" + name),
			Labels:    map[string]string{"app": name},
		},
		Spec: corev1.PodSpec{
			NodeName: node,
			Containers: []corev1.Container{{
				Name:  "main",
				Image: "registry.example/app:1.0",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
	}
	for _, t := range tweaks {
		t(p)
	}
	return p
}

// ingressPolicy selects app=target in ns and allows TCP port from pods with
// app=from (any namespace when allNamespaces).
func ingressPolicy(ns, name, target, from string, port int32) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	p := intstr.FromInt32(port)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-np-" + ns + "-" + name)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": target}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": from}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}},
			}},
		},
	}
}

// denyFromCNP is an Admin-tier ClusterNetworkPolicy whose subject is the
// namespace subject and whose one ingress rule denies the namespace peer.
func denyFromCNP(name, subject, peer string) *v1beta1.ClusterNetworkPolicy {
	byName := func(ns string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
	}
	return &v1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-cnp-" + name)},
		Spec: v1beta1.ClusterNetworkPolicySpec{
			Tier:     v1beta1.AdminTier,
			Priority: 10,
			Subject:  v1beta1.ClusterNetworkPolicySubject{Namespaces: byName(subject)},
			Ingress: []v1beta1.ClusterNetworkPolicyIngressRule{{
				Name:   "deny-" + peer,
				Action: v1beta1.ClusterNetworkPolicyRuleActionDeny,
				From:   []v1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: byName(peer)}},
			}},
		},
	}
}

// benchIP is the i-th benchmark pod address (unique for i < 2^17).
func benchIP(i int) string {
	return netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)}).String()
}

// realisticPod is a pod as the API server sends it for a typical Deployment
// replica: managed fields of three managers, annotations, owner reference, two
// containers with env, resources, probes and mounts, a restartable sidecar, a
// service account volume, five conditions and container statuses. It is what a
// cluster-wide informer would hold per pod without a transform.
func realisticPod(i int) *corev1.Pod {
	name := fmt.Sprintf("web-7d9f8c6b5-%05d", i)
	ns := fmt.Sprintf("team-%02d", i%50)
	now := metav1.NewTime(time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC))
	always := corev1.ContainerRestartPolicyAlways
	cpu := resource.MustParse("250m")
	mem := resource.MustParse("256Mi")
	probe := &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
		PeriodSeconds:    10,
		TimeoutSeconds:   1,
		FailureThreshold: 3,
	}
	container := func(cname string, port int32) corev1.Container {
		return corev1.Container{
			Name:  cname,
			Image: fmt.Sprintf("registry.example/%s/%s@sha256:%064x", ns, cname, i),
			Args:  []string{"--listen", fmt.Sprintf(":%d", port), "--log-level", "info"},
			Ports: []corev1.ContainerPort{{Name: cname + "-http", ContainerPort: port, Protocol: corev1.ProtocolTCP}},
			Env: []corev1.EnvVar{
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
				{Name: "DATABASE_URL", Value: fmt.Sprintf("postgres://db.%s.svc:5432/app", ns)},
				{Name: "FEATURE_FLAGS", Value: "a,b,c,d"},
			},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: mem},
			},
			VolumeMounts:             []corev1.VolumeMount{{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
			LivenessProbe:            probe,
			ReadinessProbe:           probe,
			TerminationMessagePath:   "/dev/termination-log",
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			ImagePullPolicy:          corev1.PullIfNotPresent,
		}
	}
	sidecar := container("proxy", 15001)
	sidecar.RestartPolicy = &always
	managed := func(manager, op string, n int) metav1.ManagedFieldsEntry {
		raw := fmt.Sprintf(`{"f:metadata":{"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"%08d\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:args":{},"f:env":{".":{},"k:{\"name\":\"POD_NAME\"}":{".":{},"f:name":{},"f:valueFrom":{}}},"f:image":{},"f:name":{},"f:ports":{}}},"f:pad%d":{}}}`, i, n)
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationType(op), APIVersion: "v1", Time: &now, FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(raw)}
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:              name,
			GenerateName:      "web-7d9f8c6b5-",
			Namespace:         ns,
			UID:               types.UID(fmt.Sprintf("6f1c2a9e-0000-4000-8000-%012d", i)),
			ResourceVersion:   fmt.Sprint(100000 + i),
			CreationTimestamp: now,
			Labels:            map[string]string{"app": "web", "pod-template-hash": "7d9f8c6b5", "version": "v1"},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/restartedAt": "2026-11-25T10:00:00Z",
				"prometheus.io/scrape":              "true",
				"prometheus.io/port":                "9090",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8c6b5", UID: types.UID(fmt.Sprintf("%08d", i))}},
			ManagedFields:   []metav1.ManagedFieldsEntry{managed("kube-controller-manager", "Update", 1), managed("kubelet", "Update", 2), managed("kubectl", "Apply", 3)},
		},
		Spec: corev1.PodSpec{
			NodeName:           fmt.Sprintf("node-%03d", i%200),
			ServiceAccountName: "web",
			Containers:         []corev1.Container{container("app", 8080), container("metrics", 9090)},
			InitContainers:     []corev1.Container{sidecar},
			Volumes: []corev1.Volume{{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			}}}}},
			Tolerations: []corev1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
				{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
			},
			RestartPolicy: corev1.RestartPolicyAlways,
			DNSPolicy:     corev1.DNSClusterFirst,
			SchedulerName: "default-scheduler",
		},
		Status: corev1.PodStatus{
			Phase:     corev1.PodRunning,
			HostIP:    fmt.Sprintf("198.19.255.%d", i%200),
			HostIPs:   []corev1.HostIP{{IP: fmt.Sprintf("198.19.255.%d", i%200)}},
			PodIP:     benchIP(i),
			PodIPs:    []corev1.PodIP{{IP: benchIP(i)}},
			QOSClass:  corev1.PodQOSBurstable,
			StartTime: &now,
		},
	}
	for _, c := range []corev1.PodConditionType{"PodReadyToStartContainers", corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled} {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Ready: true, Image: c.Image, ImageID: c.Image,
			ContainerID: fmt.Sprintf("containerd://%064x", i),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	return p
}
