package podwatch

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/enforcer"
)

func TestTransformPod(t *testing.T) {
	in := realisticPod(7)
	// An ordinary init container (not restartable) with a port: dropped.
	in.Spec.InitContainers = append(in.Spec.InitContainers, corev1.Container{
		Name: "migrate", Ports: []corev1.ContainerPort{{Name: "x", ContainerPort: 1}},
	})
	// A container without ports, and an unnamed port: dropped.
	in.Spec.Containers = append(in.Spec.Containers, corev1.Container{Name: "noports", Image: "x"},
		corev1.Container{Name: "unnamed", Ports: []corev1.ContainerPort{{ContainerPort: 7000}}})
	in.DeletionTimestamp = &metav1.Time{}
	orig := in.DeepCopy()

	got := TransformPod(in)
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:              in.Name,
			Namespace:         in.Namespace,
			UID:               in.UID,
			ResourceVersion:   in.ResourceVersion,
			Labels:            in.Labels,
			DeletionTimestamp: in.DeletionTimestamp,
			// The newest time of its managed fields and conditions.
			ManagedFields: []metav1.ManagedFieldsEntry{{Time: &metav1.Time{Time: podChangeTime(in)}}},
		},
		Spec: corev1.PodSpec{
			NodeName: in.Spec.NodeName,
			// Sidecar first, then the containers: one container with the union.
			Containers: []corev1.Container{{Ports: []corev1.ContainerPort{
				{Name: "proxy-http", ContainerPort: 15001, Protocol: corev1.ProtocolTCP},
				{Name: "app-http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
				{Name: "metrics-http", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
			}}},
		},
		Status: corev1.PodStatus{
			Phase:  corev1.PodRunning,
			PodIP:  "198.18.0.7",
			PodIPs: []corev1.PodIP{{IP: "198.18.0.7"}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TransformPod (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(orig, in); diff != "" {
		t.Errorf("TransformPod changed its input (-orig +now):\n%s", diff)
	}
	again := TransformPod(got)
	if diff := cmp.Diff(got, again); diff != "" {
		t.Errorf("TransformPod is not idempotent (-once +twice):\n%s", diff)
	}
}

func TestTransformKinds(t *testing.T) {
	ns := namespace("frontend", nsLabel("team", "web"))
	ns.Annotations = map[string]string{"a": "b"}
	ns.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	ns.Spec.Finalizers = []corev1.FinalizerName{corev1.FinalizerKubernetes}
	ns.Status.Phase = corev1.NamespaceActive

	np := ingressPolicy("frontend", "allow-web", "web", "lb", 80)
	np.Annotations = map[string]string{"a": "b", enforcer.EnforcementAnnotation: "audit"}
	changed := metav1.NewTime(time.Date(2026, 12, 6, 11, 0, 7, 0, time.UTC))
	np.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Time: &changed, FieldsType: "FieldsV1"}}

	cnp := denyFromCNP("deny-all", "backend", "frontend")
	cnp.Annotations = map[string]string{"a": "b", enforcer.EnforcementAnnotation: "audit"}

	nodeObj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"role": "infra"}, Annotations: map[string]string{"a": "b"}},
		Spec: corev1.NodeSpec{PodCIDR: "198.18.16.0/24"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "n1"}, {Type: corev1.NodeInternalIP, Address: "198.18.0.1"},
			{Type: corev1.NodeInternalDNS, Address: "n1.example"}, {Type: corev1.NodeExternalIP, Address: "2001:db8::1"}}, Capacity: corev1.ResourceList{}}}

	tombstone := cache.DeletedFinalStateUnknown{Key: "frontend/x", Obj: TransformPod(pod("frontend", "x", localNode, nil))}

	tests := []struct {
		name string
		in   any
		want any
	}{
		{
			name: "namespace keeps name and labels",
			in:   ns,
			want: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "frontend", UID: ns.UID, Labels: ns.Labels}},
		},
		{
			name: "network policy keeps spec",
			in:   np,
			want: &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: np.Name, Namespace: np.Namespace, UID: np.UID,
				Annotations:   map[string]string{enforcer.EnforcementAnnotation: "audit"},
				ManagedFields: []metav1.ManagedFieldsEntry{{Time: &changed}}}, Spec: np.Spec},
		},
		{
			name: "cluster network policy keeps spec and the enforcement annotation",
			in:   cnp,
			want: &v1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: cnp.Name, UID: cnp.UID,
				Annotations: map[string]string{enforcer.EnforcementAnnotation: "audit"}}, Spec: cnp.Spec},
		},
		{
			name: "node keeps labels and its internal and external addresses",
			in:   nodeObj,
			want: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: nodeObj.Labels},
				Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.1"}, {Type: corev1.NodeExternalIP, Address: "2001:db8::1"}}}},
		},
		{name: "tombstone passes through", in: tombstone, want: tombstone},
		{name: "unknown type passes through", in: "not an object", want: "not an object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Transform(tc.in)
			if err != nil {
				t.Fatalf("Transform: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Transform (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSameForEngine(t *testing.T) {
	base := TransformPod(pod("frontend", "web", localNode, []string{"198.18.0.10"}))
	tweak := func(f func(p *corev1.Pod)) *corev1.Pod {
		p := base.DeepCopy()
		p.ResourceVersion = "2"
		f(p)
		return TransformPod(p)
	}
	tests := []struct {
		name string
		new  any
		same bool
	}{
		{"only resourceVersion", tweak(func(*corev1.Pod) {}), true},
		{"conditions (stripped)", tweak(func(p *corev1.Pod) { p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady}} }), true},
		{"label", tweak(func(p *corev1.Pod) { p.Labels["tier"] = "1" }), false},
		{"pod IP", tweak(func(p *corev1.Pod) { p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: "2001:db8:a::10"}) }), false},
		{"phase", tweak(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), false},
		{"node", tweak(func(p *corev1.Pod) { p.Spec.NodeName = remoteNode }), false},
		{"port", tweak(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 81 }), false},
		// The engine reads nothing of a deletion request (TestGracelessDeletionIsOneChange).
		{"terminating", tweak(func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{} }), true},
		// The engine keys pods by name: the same content under a new UID changes nothing.
		{"recreated (new UID)", tweak(func(p *corev1.Pod) { p.UID = "other" }), true},
		{"other kind", namespace("frontend"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The informer compares what Transform stored.
			oldObj, _ := Transform(base)
			newObj, _ := Transform(tc.new)
			if got := sameForEngine(oldObj, newObj); got != tc.same {
				t.Errorf("sameForEngine = %v, want %v", got, tc.same)
			}
		})
	}
	np := ingressPolicy("frontend", "p", "web", "lb", 80)
	np2 := np.DeepCopy()
	np2.Spec.Ingress[0].Ports = nil
	if sameForEngine(TransformNetworkPolicy(np), TransformNetworkPolicy(np2)) {
		t.Error("policies with different ports compare the same")
	}
	audited := np.DeepCopy()
	audited.Annotations = map[string]string{enforcer.EnforcementAnnotation: "audit"}
	if sameForEngine(TransformNetworkPolicy(np), TransformNetworkPolicy(audited)) {
		t.Error("a policy put in audit mode compares the same")
	}
	cnp := denyFromCNP("p", "backend", "frontend")
	cnpAudited := cnp.DeepCopy()
	cnpAudited.Annotations = map[string]string{enforcer.EnforcementAnnotation: "audit"}
	if sameForEngine(TransformClusterNetworkPolicy(cnp), TransformClusterNetworkPolicy(cnpAudited)) {
		t.Error("a cluster network policy put in audit mode compares the same")
	}
	ns2 := namespace("frontend", nsLabel("team", "web"))
	if sameForEngine(TransformNamespace(namespace("frontend")), TransformNamespace(ns2)) {
		t.Error("namespaces with different labels compare the same")
	}
}

// decodedPods returns n pods decoded from JSON, as a reflector receives them (every
// string its own allocation, nothing shared between pods).
func decodedPods(tb testing.TB, n int) []*corev1.Pod {
	tb.Helper()
	pods := make([]*corev1.Pod, n)
	for i := range pods {
		raw, err := json.Marshal(realisticPod(i))
		if err != nil {
			tb.Fatal(err)
		}
		p := &corev1.Pod{}
		if err := json.Unmarshal(raw, p); err != nil {
			tb.Fatal(err)
		}
		pods[i] = p
	}
	return pods
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkTransform measures the heap an informer cache holds per pod, with and
// without the transform: each iteration decodes n realistic pods one at a time
// (as a reflector would), optionally transforms each, and adds it to an indexer
// with the namespace index informers use; the heap growth divided by n is
// reported as B/pod. Run with -benchtime=1x; the 100000 size takes a while.
func BenchmarkTransform(b *testing.B) {
	for _, n := range []int{100, 1000, 10000, 100000} {
		for _, transform := range []bool{false, true} {
			mode := "raw"
			if transform {
				mode = "transformed"
			}
			b.Run(fmt.Sprintf("pods=%d/%s", n, mode), func(b *testing.B) {
				var perPod float64
				for b.Loop() {
					store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
					before := heapInUse()
					for i := range n {
						raw, err := json.Marshal(realisticPod(i))
						if err != nil {
							b.Fatal(err)
						}
						p := &corev1.Pod{}
						if err := json.Unmarshal(raw, p); err != nil {
							b.Fatal(err)
						}
						var obj any = p
						if transform {
							obj, _ = Transform(p)
						}
						if err := store.Add(obj); err != nil {
							b.Fatal(err)
						}
					}
					after := heapInUse()
					perPod = float64(int64(after)-int64(before)) / float64(n)
					runtime.KeepAlive(store)
				}
				b.ReportMetric(perPod, "B/pod")
			})
		}
	}
}

// BenchmarkTransformPod is the CPU cost of transforming one realistic pod (it
// runs in the informer's delivery path).
func BenchmarkTransformPod(b *testing.B) {
	pods := decodedPods(b, 1000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, _ = Transform(pods[i%len(pods)])
		i++
	}
}
