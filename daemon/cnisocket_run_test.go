package daemon

// The daemon with its CNI socket, over a fake API server and nft.Fake.
//
// IP plan: node "node-a" (this node) has the pod CIDRs 198.18.0.0/24 and
// 2001:db8:a::/64. frontend/web (uid-1) comes up at 198.18.0.10 and
// 2001:db8:a::10; the API server has no status for it (the kubelet has not
// written it yet). Policy frontend/web-isolated isolates it for ingress.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	cnitypes "github.com/containernetworking/cni/pkg/types"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nftwarden/nftwarden/daemon/cniplugin"
	"github.com/nftwarden/nftwarden/daemon/cniwire"
	"github.com/nftwarden/nftwarden/nft"
)

// cniCluster is the API server's objects: the namespace, the pod without
// status, and the policy that isolates it.
func cniCluster() []runtime.Object {
	return []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "frontend"}},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "frontend", Name: "web", UID: types.UID("uid-1"), Labels: map[string]string{"app": "web"}},
			Spec:       corev1.PodSpec{NodeName: "node-a"},
			Status:     corev1.PodStatus{Phase: corev1.PodPending},
		},
		&networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "frontend", Name: "web-isolated"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			},
		},
	}
}

// cniDaemon is a daemon with a CNI socket, the test's client of it and its
// dataplane.
type cniDaemon struct {
	d      *daemon
	dp     *nft.Fake
	client *http.Client
}

func newCNIDaemon(t *testing.T, client *fake.Clientset, fp firstPacketConfig) *cniDaemon {
	t.Helper()
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	path := filepath.Join(t.TempDir(), "cni.sock")
	ln, err := listenCNISocket(path)
	if err != nil {
		t.Fatal(err)
	}
	cd := &cniDaemon{dp: nft.NewFake("nftwarden"), client: unixClient(path)}
	cfg := runConfig{NodeName: "node-a", Table: "nftwarden", ResyncPeriod: time.Minute, CNISocket: path}
	cfg.VerdictLog.FirstPacket = fp
	cd.d = &daemon{cfg: cfg, log: slog.New(slog.DiscardHandler), client: client, dataplane: cd.dp,
		notifier: notifierFromEnv(), cniListener: ln}
	return cd
}

// holds reports whether the dataplane's set (or map) name has an element
// for addr (an address, or the start of a range).
func (cd *cniDaemon) holds(t *testing.T, name, addr string) bool {
	t.Helper()
	st, err := cd.dp.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	set := st.Sets[name]
	if set == nil {
		return false
	}
	for id := range set.Elements.IDs() {
		if id == addr || strings.HasPrefix(id, addr+" ") || strings.HasPrefix(id, addr+"-") {
			return true
		}
	}
	return false
}

func (cd *cniDaemon) post(t *testing.T, path string, req cniwire.Request) (int, cniwire.Response) {
	t.Helper()
	return cniPost(t, cd.client, path, mustJSON(t, req))
}

func TestCNISocketProgramsPods(t *testing.T) {
	cd := newCNIDaemon(t, fake.NewClientset(cniCluster()...),
		firstPacketConfig{On: true, PodCIDRs: prefixes("198.18.0.0/24", "2001:db8:a::/64")})
	runUntilCleanup(t, cd.d)

	// Before ADD (and before ready): not programmed.
	if status, resp := cd.post(t, cniwire.PathCheck, webReq); status != http.StatusServiceUnavailable && status != http.StatusConflict {
		t.Errorf("CHECK before ADD: %d %q, want 503 (not ready) or 409", status, resp.Error)
	}
	// ADD waits for ready, and returns when the kernel has the pod.
	status, resp := cd.post(t, cniwire.PathAdd, tweakReq(func(r *cniwire.Request) { r.Timeout = 10 * time.Second }))
	if status != http.StatusOK {
		t.Fatalf("ADD: %d %q", status, resp.Error)
	}
	for _, set := range []string{"local-pods-v4", "ingress-v4"} {
		if !cd.holds(t, set, "198.18.0.10") {
			t.Errorf("after ADD, %s lacks 198.18.0.10:\n%s", set, cd.dp.Dump())
		}
	}
	for _, set := range []string{"local-pods-v6", "ingress-v6"} {
		if !cd.holds(t, set, "2001:db8:a::10") {
			t.Errorf("after ADD, %s lacks 2001:db8:a::10", set)
		}
	}
	if status, resp := cd.post(t, cniwire.PathCheck, webReq); status != http.StatusOK {
		t.Errorf("CHECK after ADD: %d %q", status, resp.Error)
	}

	// DEL takes the addresses out although the pod object still exists.
	if status, resp := cd.post(t, cniwire.PathDel, webReq); status != http.StatusOK {
		t.Fatalf("DEL: %d %q", status, resp.Error)
	}
	if cd.holds(t, "local-pods-v4", "198.18.0.10") || cd.holds(t, "ingress-v4", "198.18.0.10") {
		t.Errorf("after DEL the kernel still has 198.18.0.10:\n%s", cd.dp.Dump())
	}
	if status, _ := cd.post(t, cniwire.PathCheck, webReq); status != http.StatusConflict {
		t.Errorf("CHECK after DEL: %d, want 409", status)
	}
	if status, resp := cd.post(t, cniwire.PathDel, webReq); status != http.StatusOK {
		t.Errorf("DEL again: %d %q, want 200 (idempotent)", status, resp.Error)
	}

	// A pod the API server does not have is not programmed.
	ghost := tweakReq(func(r *cniwire.Request) { r.Name, r.IPs = "ghost", []netip.Addr{netip.MustParseAddr("198.18.0.11")} })
	if status, _ := cd.post(t, cniwire.PathAdd, ghost); status != http.StatusNotFound {
		t.Errorf("ADD of a pod the API server lacks: %d, want 404", status)
	}
	if cd.holds(t, "local-pods-v4", "198.18.0.11") {
		t.Error("the unknown pod's address was programmed")
	}
	// An address no pod can have: the engine refuses it.
	multicast := tweakReq(func(r *cniwire.Request) { r.IPs = []netip.Addr{netip.MustParseAddr("224.0.0.1")} })
	if status, resp := cd.post(t, cniwire.PathAdd, multicast); status != http.StatusUnprocessableEntity || resp.Retry {
		t.Errorf("ADD with a multicast address: %d retry %v %q, want 422 without retry", status, resp.Retry, resp.Error)
	}
}

// TestCNISocketNotReady: while the API server has not been listed, ADD is
// answered 503 (retry) within its timeout.
func TestCNISocketNotReady(t *testing.T) {
	client := fake.NewClientset(cniCluster()...)
	block := make(chan struct{})
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-block
		return false, nil, nil
	})
	cd := newCNIDaemon(t, client, firstPacketConfig{})
	runUntilCleanup(t, cd.d)
	t.Cleanup(func() { close(block) })
	start := time.Now()
	// The reply margin is a tenth of the timeout (200 ms here): room for a
	// loaded machine between the budget's end and the answer.
	const timeout = 2 * time.Second
	status, resp := cd.post(t, cniwire.PathAdd, tweakReq(func(r *cniwire.Request) { r.Timeout = timeout }))
	if status != http.StatusServiceUnavailable || !resp.Retry || !strings.Contains(resp.Error, "not ready") {
		t.Errorf("ADD before ready: %d retry %v %q, want 503, retry, not ready", status, resp.Retry, resp.Error)
	}
	if took := time.Since(start); took >= timeout {
		t.Errorf("answered after %v, not within the timeout", took)
	}
}

// TestDaemonPodCIDRs: with isolation on and no --pod-cidr the daemon takes
// its Node's pod CIDRs, --pod-cidr overrides them, and with isolation off it
// programs none.
func TestDaemonPodCIDRs(t *testing.T) {
	tests := []struct {
		name string
		fp   firstPacketConfig
		want string // the start of the range in pod-cidrs-v4; "" for no set
	}{
		{name: "from the Node", fp: firstPacketConfig{On: true}, want: "198.18.0.0"},
		{name: "--pod-cidr", fp: firstPacketConfig{On: true, PodCIDRs: prefixes("198.18.2.0/24")}, want: "198.18.2.0"},
		{name: "off", fp: firstPacketConfig{PodCIDRs: prefixes("198.18.2.0/24")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := append(cniCluster(), testNode("node-a", "198.18.0.0/24", "2001:db8:a::/64"))
			cd := newCNIDaemon(t, fake.NewClientset(objs...), tc.fp)
			runUntilCleanup(t, cd.d)
			status, resp := cd.post(t, cniwire.PathAdd, tweakReq(func(r *cniwire.Request) { r.Timeout = 10 * time.Second }))
			if status != http.StatusOK {
				t.Fatalf("ADD: %d %q", status, resp.Error)
			}
			st, err := cd.dp.Read(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			set := st.Sets["pod-cidrs-v4"]
			switch {
			case tc.want == "" && set != nil:
				t.Errorf("isolation off, but the table has pod-cidrs-v4:\n%s", cd.dp.Dump())
			case tc.want != "" && !cd.holds(t, "pod-cidrs-v4", tc.want):
				t.Errorf("pod-cidrs-v4 lacks %s:\n%s", tc.want, cd.dp.Dump())
			}
		})
	}
}

// TestDaemonPodCIDRsLater: a Node that gets its pod CIDRs after the daemon
// started (the node IPAM controller was late) has them programmed then.
func TestDaemonPodCIDRsLater(t *testing.T) {
	client := fake.NewClientset(append(cniCluster(), testNode("node-a"))...)
	cd := newCNIDaemon(t, client, firstPacketConfig{On: true})
	cd.d.podCIDRRetry = 20 * time.Millisecond
	runUntilCleanup(t, cd.d)
	if status, resp := cd.post(t, cniwire.PathAdd, tweakReq(func(r *cniwire.Request) { r.Timeout = 10 * time.Second })); status != http.StatusOK {
		t.Fatalf("ADD: %d %q", status, resp.Error)
	}
	if cd.holds(t, "pod-cidrs-v4", "198.18.0.0") {
		t.Fatal("pod CIDRs programmed before the Node has them")
	}
	if _, err := client.CoreV1().Nodes().Update(context.Background(), testNode("node-a", "198.18.0.0/24", "2001:db8:a::/64"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pod CIDRs programmed", func() bool {
		return cd.holds(t, "pod-cidrs-v4", "198.18.0.0") && cd.holds(t, "pod-cidrs-v6", "2001:db8:a::")
	})
	if !cd.holds(t, "local-pods-v4", "198.18.0.10") {
		t.Errorf("the started pod is not a known local pod:\n%s", cd.dp.Dump())
	}
}

// TestCNIPluginAgainstTheDaemon runs the plugin's commands (package
// cniplugin, as the runtime's exec of nftwarden-cni would) against the
// daemon's socket: the two ends of cniwire agree.
func TestCNIPluginAgainstTheDaemon(t *testing.T) {
	cd := newCNIDaemon(t, fake.NewClientset(cniCluster()...),
		firstPacketConfig{On: true, PodCIDRs: prefixes("198.18.0.0/24", "2001:db8:a::/64")})
	runUntilCleanup(t, cd.d)
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "pods", "type": "nftwarden-cni", "socket": %q, "timeout": "10s",
		"prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/web"}],
			"ips": [{"interface": 0, "address": "198.18.0.10/24"}, {"interface": 0, "address": "2001:db8:a::10/64"}]}}`, cd.d.cfg.CNISocket)
	args := &skel.CmdArgs{ContainerID: "c0ffee", Netns: "/var/run/netns/web", IfName: "eth0",
		Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=frontend;K8S_POD_NAME=web;K8S_POD_UID=uid-1", StdinData: []byte(conf)}
	var out, warnings bytes.Buffer
	p := &cniplugin.Plugin{Stdout: &out, Stderr: &warnings}

	if err := p.Add(args); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	if !cd.holds(t, "local-pods-v4", "198.18.0.10") || !cd.holds(t, "ingress-v6", "2001:db8:a::10") {
		t.Errorf("after ADD the kernel lacks the pod:\n%s", cd.dp.Dump())
	}
	if !strings.Contains(out.String(), `"198.18.0.10/24"`) {
		t.Errorf("ADD did not pass prevResult on: %s", out.String())
	}
	if err := p.Check(args); err != nil {
		t.Errorf("CHECK after ADD: %v", err)
	}
	if err := p.Del(args); err != nil || warnings.Len() > 0 {
		t.Fatalf("DEL: %v, warnings %q", err, warnings.String())
	}
	if cd.holds(t, "local-pods-v4", "198.18.0.10") {
		t.Errorf("after DEL the kernel still has the pod:\n%s", cd.dp.Dump())
	}
	var cniErr *cnitypes.Error
	if err := p.Check(args); !errors.As(err, &cniErr) {
		t.Errorf("CHECK after DEL = %v, want a CNI error", err)
	}
}
