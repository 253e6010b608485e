package enforcer_test

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

// A CNI plugin that embeds the engine programs a new pod with the addresses
// of its CNI result before its ADD returns, so the pod is isolated from its
// first packet; the pod object (labels, node) comes from the API server, its
// status has no IPs yet.
func ExampleEngine_StartPod() {
	ctx := context.Background()
	fake := nft.NewFake(nft.DefaultTable) // nft.NewKernel on a node
	eng, err := enforcer.New(enforcer.Config{NodeName: "node-a", Dataplane: fake})
	if err != nil {
		fmt.Println(err)
		return
	}
	// The cluster as the API server has it: a default deny for the
	// namespace, programmed by a first Flush (before it StartPod answers
	// ErrNotSynced: a model not filled yet must not reach the kernel).
	_ = eng.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
	_ = eng.UpsertNetworkPolicy(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default-deny"}})
	if _, err := eng.Flush(ctx); err != nil {
		fmt.Println(err)
		return
	}

	// CNI ADD for shop/web: the main plugin gave it 198.18.0.10.
	web := enforcer.NewPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "node-a"},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	})
	addr := netip.MustParseAddr("198.18.0.10")
	if _, err := eng.StartPod(ctx, web, []netip.Addr{addr}); err != nil {
		fmt.Println("ADD fails, the runtime retries:", err)
		return
	}
	// The pod's isolation is in the table now.
	fmt.Println("programmed:", eng.PodProgrammed("shop", "web", []netip.Addr{addr}))
	d := eng.Decide(enforcer.Flow{Src: netip.MustParseAddr("198.18.0.99"), Dst: addr, Protocol: corev1.ProtocolTCP, Port: 80})
	fmt.Println(d.Reason)

	// CNI DEL: the sandbox is gone; its address leaves the table although
	// the pod object may still list it.
	if _, err := eng.StopPod(ctx, "shop", "web", []netip.Addr{addr}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("after DEL:", eng.PodProgrammed("shop", "web", nil))
	// Output:
	// programmed: <nil>
	// denied: ingress of shop/web is isolated by shop/default-deny and no rule allows it
	// after DEL: enforcer: pod shop/web has no address (neither announced nor in its status, or released)
}
