package daemon

// IP plan: node "node-a" is this node; backend/api (local) 198.18.0.20 is
// isolated for ingress by backend/allow-web, which admits backend/web (on node-b,
// 198.18.1.10).

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nftwarden/nftwarden/nft"
)

func testPod(ns, name, node, ip string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

// runUntilCleanup runs the daemon until the test ends; an error of its run
// fails the test.
func runUntilCleanup(t *testing.T, d *daemon) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestDaemonRun runs the daemon over a fake API server and nft.Fake: it must
// notify systemd, become ready, serve health and metrics, and on cancel notify
// STOPPING and leave the table in place.
func TestDaemonRun(t *testing.T) {
	notify := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "100000") // 100ms: pings every 50ms
	t.Setenv("WATCHDOG_PID", "")
	port := intstr.FromInt32(8080)
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "backend"}},
		testPod("backend", "api", "node-a", "198.18.0.20"),
		testPod("backend", "web", "node-b", "198.18.1.10"),
		&networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "backend", Name: "allow-web"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
				}},
			},
		},
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	dp := nft.NewFake("nftwarden")
	d := &daemon{
		cfg:       runConfig{NodeName: "node-a", Table: "nftwarden", MetricsAddress: ln.Addr().String(), ResyncPeriod: time.Minute},
		log:       slog.New(slog.DiscardHandler),
		client:    client,
		apiHost:   "fake",
		dataplane: dp,
		notifier:  notifierFromEnv(),
		listener:  ln,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.run(ctx) }()

	// Notifications until READY=1: STATUS lines first; WATCHDOG pings may
	// interleave.
	var ready string
	for ready == "" {
		msg := readNotify(t, notify)
		if strings.HasPrefix(msg, "READY=1") {
			ready = msg
		}
	}
	if !strings.Contains(ready, "STATUS=enforcing: 1 local pods, 1 policies") {
		t.Errorf("READY notification %q lacks the status", ready)
	}
	if msg := readNotify(t, notify); msg != "WATCHDOG=1" {
		t.Errorf("after READY got %q, want watchdog pings", msg)
	}

	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after READY: %d %q", code, body)
	}
	if code, _ := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	code, metrics := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{"nftwarden_pods_known 2", "nftwarden_local_pods 1", "nftwarden_policies_known 1",
		"nftwarden_ready 1", `nftwarden_syncs_total{mode="full",result="success"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	table := dp.Dump()
	if !strings.Contains(table, "198.18.0.20") || !strings.Contains(table, "198.18.1.10") {
		t.Errorf("programmed table lacks the pods:\n%s", table)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	for {
		msg := readNotify(t, notify)
		if msg == "STOPPING=1" {
			break
		}
		if msg != "WATCHDOG=1" {
			t.Fatalf("unexpected notification while stopping: %q", msg)
		}
	}
	if after := dp.Dump(); after != table {
		t.Errorf("table changed on stop:\n%s", after)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("HTTP server still serving after run returned")
	}
}

// TestReadyzBeforeSync: while the API server is not synced, /readyz says 503.
func TestReadyzBeforeSync(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	client := fake.NewClientset()
	block := make(chan struct{})
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-block
		return false, nil, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{
		cfg:       runConfig{NodeName: "node-a", Table: "nftwarden", ResyncPeriod: time.Minute},
		log:       slog.New(slog.DiscardHandler),
		client:    client,
		dataplane: nft.NewFake("nftwarden"),
		notifier:  notifierFromEnv(),
		listener:  ln,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx) }()
	defer func() {
		close(block)
		cancel()
		<-done
	}()
	var code int
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + ln.Addr().String() + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code, body = resp.StatusCode, string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready") {
		t.Errorf("/readyz before sync: %d %q, want 503", code, body)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRunWithUnreachableAPIServer points the daemon at a loopback port where
// nothing listens: it must say so in the log, stay unready, program nothing, and
// stop promptly when asked.
func TestRunWithUnreachableAPIServer(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	// Reserve a loopback port and close it: connections to it are refused.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := "https://" + probe.Addr().String()
	probe.Close()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+server+`", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	clients, gate, err := gatedClient(kubeconfig, log)
	if err != nil {
		t.Fatal(err)
	}
	defer gate.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dp := nft.NewFake("nftwarden")
	d := &daemon{
		cfg:       runConfig{NodeName: "node-a", Table: "nftwarden", ResyncPeriod: time.Minute},
		log:       log,
		client:    clients.kube,
		apiHost:   clients.host,
		gate:      gate,
		dataplane: dp,
		notifier:  notifierFromEnv(),
		listener:  ln,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx) }()

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "API server unreachable") {
		if time.Now().After(deadline) {
			t.Fatalf("no outage in the log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := httpGet(t, "http://"+ln.Addr().String()+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d without an API server, want 503", code)
	}
	if !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("the log does not say why:\n%s", logs.String())
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
	t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
	if _, err := dp.Read(context.Background()); err == nil {
		t.Error("a table was programmed without the API server")
	}
}

// TestHealthzReportsStall blocks the dataplane in the middle of a sync: /healthz
// must turn 503 once the sync runs longer than the stall limit, and 200 again
// when it finishes. Meanwhile a /metrics scrape answers: the engine does not
// hold its lock while the dataplane works.
func TestHealthzReportsStall(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "backend"}},
		// Deny all ingress in backend: a new local pod there is a new
		// dispatch-map element, so its flush reaches Apply.
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "backend", Name: "deny"}},
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	dp := nft.NewFake("nftwarden")
	d := &daemon{
		cfg:        runConfig{NodeName: "node-a", Table: "nftwarden", ResyncPeriod: time.Hour},
		log:        slog.New(slog.DiscardHandler),
		client:     client,
		dataplane:  dp,
		notifier:   notifierFromEnv(),
		listener:   ln,
		stallLimit: 200 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("ready", func() bool { code, _ := httpGet(t, base+"/readyz"); return code == http.StatusOK })

	entered, release := dp.BlockApply()
	defer release()
	// A new local pod needs a delta: the flush blocks in Apply.
	if _, err := client.CoreV1().Pods("backend").Create(ctx, testPod("backend", "api", "node-a", "198.18.0.20"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the flush to reach Apply")
	}
	scraped := make(chan string, 1)
	go func() {
		// Not httpGet: it fails the test, which only this goroutine's
		// caller may do.
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			scraped <- err.Error()
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		scraped <- resp.Status + "\n" + string(body)
	}()
	select {
	case got := <-scraped:
		if !strings.HasPrefix(got, "200 OK") || !strings.Contains(got, "nftwarden_pods_known 1") {
			t.Errorf("/metrics during a blocked Apply: %.300s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("/metrics did not answer while the dataplane held a flush")
	}
	waitFor("/healthz 503", func() bool { code, _ := httpGet(t, base+"/healthz"); return code == http.StatusServiceUnavailable })
	release()
	waitFor("/healthz 200", func() bool { code, _ := httpGet(t, base+"/healthz"); return code == http.StatusOK })
}
