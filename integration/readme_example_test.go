package integration

// The embedding example of README.md, kept here so that it always compiles. It has no
// Output comment, so `go test` compiles it without running it (it would program the
// machine's own network namespace).

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

func Example_embedding() {
	ctx := context.Background()

	// The dataplane: table inet nftwarden in the current network namespace, over netlink.
	dp, err := nft.NewKernel()
	if err != nil {
		fmt.Println("nftables:", err)
		return
	}
	defer dp.Close()

	// One engine per node; pods whose spec.nodeName is NodeName get their policies here.
	eng, err := enforcer.New(enforcer.Config{NodeName: "node-1", Dataplane: dp})
	if err != nil {
		fmt.Println("engine:", err)
		return
	}

	// Feed it the cluster as your CNI plugin or controller sees it.
	_ = eng.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "shop"}}})
	_ = eng.UpsertPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db", Labels: map[string]string{"app": "db"}},
		Spec:       corev1.PodSpec{NodeName: "node-1"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "198.18.16.2"}}},
	})
	if err := eng.UpsertNetworkPolicy(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default-deny"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}); err != nil {
		fmt.Println("policy:", err) // invalid parts fail closed and are reported
	}

	// One atomic nftables transaction with what changed.
	res, err := eng.Flush(ctx)
	if err != nil {
		fmt.Println("flush:", err)
		return
	}
	fmt.Printf("applied %d operations in %s\n", res.Operations, res.Duration)

	// Ask the model why a flow is allowed or not (what `nftwarden explain` prints).
	d := eng.Decide(enforcer.Flow{
		Src:      netip.MustParseAddr("198.18.17.5"),
		Dst:      netip.MustParseAddr("198.18.16.2"),
		Protocol: corev1.ProtocolTCP,
		Port:     5432,
	})
	fmt.Println(d.Allowed, d.Reason)
}
