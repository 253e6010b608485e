package daemon

// The CNI path through the kernel: the node of kernelnode_test.go with
// first-packet isolation on for 198.18.1.0/24, where backend/web
// (198.18.1.20) is a new pod whose status the kubelet has not written yet.
// No policy isolates web; only first-packet isolation keeps it from talking
// until it is programmed.

import (
	"context"
	"net/http"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/daemon/cniwire"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

func TestPrivilegedDaemonCNIAdd(t *testing.T) {
	nfttest.RequireNetAdmin(t)
	socket := filepath.Join(t.TempDir(), "cni.sock")
	n := startKernelNodeWith(t, func(n *kernelNode, d *daemon) {
		web := testPod("backend", "web", "node-a", "")
		web.Status = corev1.PodStatus{Phase: corev1.PodPending}
		if _, err := n.client.CoreV1().Pods("backend").Update(context.Background(), web, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		ln, err := listenCNISocket(socket)
		if err != nil {
			t.Fatal(err)
		}
		d.cfg.CNISocket, d.cniListener = socket, ln
		d.cfg.VerdictLog.FirstPacket = firstPacketConfig{On: true, PodCIDRs: prefixes("198.18.1.0/24")}
	}, func(api *nfttest.Pod) { nfttest.Serve(t, api, []int{8080}, 0) }, portOf(corev1.ProtocolTCP, 8080))
	nfttest.Serve(t, n.web, []int{8080}, 0)
	toWeb, toAPI := netip.AddrPortFrom(n.web.V4, 8080), netip.AddrPortFrom(n.api.V4, 8080)
	probe := func(from *nfttest.Pod, to netip.AddrPort) bool {
		t.Helper()
		ok, err := nfttest.Probe(from, "tcp", to)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if probe(n.api, toWeb) {
		t.Fatal("api reached web before web was programmed (first-packet isolation)")
	}

	c := unixClient(socket)
	req := cniwire.Request{Namespace: "backend", Name: "web", ContainerID: "c0ffee", IPs: []netip.Addr{n.web.V4}, Timeout: 10 * time.Second}
	if status, resp := cniPost(t, c, cniwire.PathAdd, mustJSON(t, req)); status != http.StatusOK {
		t.Fatalf("ADD: %d %q", status, resp.Error)
	}
	// As soon as ADD returns: web is known (api reaches it) and a peer
	// (allow-web admits it to api).
	if !probe(n.api, toWeb) {
		t.Error("api cannot reach web after its ADD returned")
	}
	if !probe(n.web, toAPI) {
		t.Error("web is not admitted to api (allow-web) after its ADD returned")
	}

	if status, resp := cniPost(t, c, cniwire.PathDel, mustJSON(t, req)); status != http.StatusOK {
		t.Fatalf("DEL: %d %q", status, resp.Error)
	}
	if probe(n.api, toWeb) {
		t.Error("api reaches web's address after its DEL")
	}
}
