package podwatch

// BenchmarkMemoryPerPod uses the workload of integration/cmd/memload (the
// end-to-end daemon memory benchmark) in process: namespaces team-NNNN of 100
// pods, 10 policies each, pods with six labels and three named ports spread
// over 500 nodes, IPs from 198.18.64.1 upward (TEST-NET 198.18.0.0/15).

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

const memNode = "bench-node-000"

// -heapprofile writes a heap profile while the cache and the engine of
// BenchmarkMemoryPerPod are live (go test's -memprofile is written after
// they are gone); run it with -memprofilerate=512 or lower for detail.
var heapProfile = flag.String("heapprofile", "", "BenchmarkMemoryPerPod: write a heap profile with the pods loaded to this file")

func memNamespace(i int) *corev1.Namespace {
	name := fmt.Sprintf("team-%04d", i)
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"kubernetes.io/metadata.name": name,
		"team":                        fmt.Sprintf("t%d", i%50), "env": []string{"prod", "staging", "dev"}[i%3],
	}}}
}

// memPod is the i-th pod of memload as the engine's transform sees it (the
// fields the transform drops do not matter here).
func memPod(i int) *corev1.Pod {
	app := fmt.Sprintf("app-%d", i%10)
	hash := fmt.Sprintf("%08x", uint32(i/10)*2654435761)
	ip := netip.AddrFrom4([4]byte{198, byte(18 + (64+i/254)/256), byte((64 + i/254) % 256), byte(i%254 + 1)}).String()
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       fmt.Sprintf("team-%04d", i/100),
			Name:            fmt.Sprintf("%s-%s-%05d", app, hash[:6], i),
			UID:             types.UID(fmt.Sprintf("6f1c2a9e-0000-4000-8000-%012d", i)),
			ResourceVersion: fmt.Sprint(100000 + i),
			Labels: map[string]string{
				"app.kubernetes.io/name":    app,
				"app.kubernetes.io/part-of": "shop",
				"app.kubernetes.io/version": fmt.Sprintf("1.%d.0", i%7),
				"tier":                      []string{"frontend", "backend", "db"}[i%3],
				"pod-template-hash":         hash[:6],
				"security.example.com/zone": []string{"a", "b"}[i%2],
			},
		},
		Spec: corev1.PodSpec{
			NodeName: fmt.Sprintf("bench-node-%03d", i%500),
			Containers: []corev1.Container{
				{Name: "app", Ports: []corev1.ContainerPort{
					{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
					{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
				}},
				{Name: "proxy", Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 15000, Protocol: corev1.ProtocolTCP}}},
			},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

// memPolicy is memload's k-th policy of a namespace.
func memPolicy(ns string, k int) *networkingv1.NetworkPolicy {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	port := func(p intstr.IntOrString, proto *corev1.Protocol) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Port: &p, Protocol: proto}
	}
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("policy-%d", k)}}
	sel := metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": fmt.Sprintf("app-%d", k)}}
	switch k % 5 {
	case 0:
		np.Spec = networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}
	case 1:
		np.Spec = networkingv1.NetworkPolicySpec{PodSelector: sel, Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "frontend"}}}},
			Ports: []networkingv1.NetworkPolicyPort{port(intstr.FromString("http"), &tcp)},
		}}}
	case 2:
		np.Spec = networkingv1.NetworkPolicySpec{PodSelector: sel, Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod", "staging"}}}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"security.example.com/zone": "a"}},
			}},
			Ports: []networkingv1.NetworkPolicyPort{port(intstr.FromString("metrics"), &tcp), port(intstr.FromInt32(15000), &tcp)},
		}}}
	case 3:
		np.Spec = networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{Ports: []networkingv1.NetworkPolicyPort{port(intstr.FromInt32(53), &udp), port(intstr.FromInt32(53), &tcp)}},
				{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", k)}}}}},
			}}
	default:
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

// discardDataplane accepts every transaction and keeps nothing: the kernel's
// copy of the table is not the daemon's memory.
type discardDataplane struct{}

func (discardDataplane) Apply(context.Context, *nft.Transaction) error { return nil }
func (discardDataplane) Reconcile(_ context.Context, want *nft.State) (*nft.Transaction, error) {
	return nft.Diff(nft.NewState(), want, nil), nil
}
func (discardDataplane) Read(context.Context) (*nft.State, error) { return nft.NewState(), nil }
func (discardDataplane) Cleanup(context.Context) error            { return nil }

// BenchmarkMemoryPerPod measures the live heap per pod of the daemon's two
// holders of pods: the pod informer cache (JSON-decoded pods, transformed, in an
// indexer like the informer's) and the engine (model and compiled state after a
// full reconcile), with namespaces and policies loaded first and not counted.
// It is the in-process counterpart of scripts/bench-daemon-memory.sh. The
// engine keeps the pods the cache holds (enforcer.Pod) rather than copies, so
// the pods themselves count in cache-B/pod; engine-B/pod is its indexes and
// compiled state.
func BenchmarkMemoryPerPod(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			var cachePer, enginePer float64
			for b.Loop() {
				eng, err := enforcer.New(enforcer.Config{NodeName: memNode, Dataplane: discardDataplane{}})
				if err != nil {
					b.Fatal(err)
				}
				nns := (n + 99) / 100
				for i := range nns {
					ns := memNamespace(i)
					if err := eng.UpsertNamespace(ns); err != nil {
						b.Fatal(err)
					}
					for k := range 10 {
						if err := eng.UpsertNetworkPolicy(memPolicy(ns.Name, k)); err != nil {
							b.Fatal(err)
						}
					}
				}
				if _, err := eng.Reconcile(context.Background()); err != nil {
					b.Fatal(err)
				}
				// As the watcher's pod informer: no index but the key.
				store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
				before := heapInUse()
				for i := range n {
					raw, err := json.Marshal(memPod(i))
					if err != nil {
						b.Fatal(err)
					}
					p := &corev1.Pod{}
					if err := json.Unmarshal(raw, p); err != nil {
						b.Fatal(err)
					}
					obj, _ := Transform(p)
					if err := store.Add(obj); err != nil {
						b.Fatal(err)
					}
				}
				cached := heapInUse()
				for _, obj := range store.List() {
					if err := eng.UpsertParsedPod(obj.(*compactPod).pod); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := eng.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
				after := heapInUse()
				if *heapProfile != "" {
					if err := writeHeapProfile(*heapProfile); err != nil {
						b.Fatal(err)
					}
				}
				cachePer = float64(int64(cached)-int64(before)) / float64(n)
				enginePer = float64(int64(after)-int64(cached)) / float64(n)
				if st := eng.Stats(); st.Pods != n {
					b.Fatalf("engine knows %d pods, want %d", st.Pods, n)
				}
				runtime.KeepAlive(store)
				runtime.KeepAlive(eng)
			}
			b.ReportMetric(cachePer, "cache-B/pod")
			b.ReportMetric(enginePer, "engine-B/pod")
			b.ReportMetric(cachePer+enginePer, "B/pod")
		})
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("heap profile %s: %w", path, err)
	}
	return f.Close()
}
