package enforcer_test

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// An engine for node-a: a web pod that only the frontend may reach on port 80.
func Example() {
	fake := nft.NewFake(nft.DefaultTable)
	eng, err := enforcer.New(enforcer.Config{NodeName: "node-a", Dataplane: fake})
	if err != nil {
		fmt.Println(err)
		return
	}
	pod := func(name, app, ip string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"app": app}},
			Spec:       corev1.PodSpec{NodeName: "node-a"},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: ip}}},
		}
	}
	port80 := intstr.FromInt32(80)
	_ = eng.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
	_ = eng.UpsertPod(pod("web", "web", "198.18.0.10"))
	_ = eng.UpsertPod(pod("frontend", "frontend", "198.18.0.11"))
	_ = eng.UpsertPod(pod("batch", "batch", "198.18.0.12"))
	_ = eng.UpsertNetworkPolicy(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-from-frontend"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "frontend"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port80}},
			}},
		},
	})
	res, err := eng.Flush(context.Background())
	fmt.Println("full sync:", res.Full, "error:", err)

	for _, src := range []string{"198.18.0.11", "198.18.0.12"} {
		d := eng.Decide(enforcer.Flow{
			Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("198.18.0.10"),
			Protocol: corev1.ProtocolTCP, Port: 80,
		})
		fmt.Println(d.Reason)
	}

	// The same pod again changes nothing: the next Flush sends no operation.
	_ = eng.UpsertPod(pod("web", "web", "198.18.0.10"))
	res, _ = eng.Flush(context.Background())
	fmt.Println("operations:", res.Operations)
	// Output:
	// full sync: true error: <nil>
	// allowed: egress of shop/frontend is not isolated; ingress of shop/web is allowed by shop/web-from-frontend
	// denied: egress of shop/batch is not isolated; ingress of shop/web is isolated by shop/web-from-frontend and no rule allows it
	// operations: 0
}
