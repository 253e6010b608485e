package daemon

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// TestClientsContentTypes: the core client asks for protobuf (cheaper to
// encode and decode for every pod of the cluster at start), the
// ClusterNetworkPolicy client for JSON (custom resources have no protobuf),
// and both go through the one wrapped transport of cfg (the API gate).
func TestClientsContentTypes(t *testing.T) {
	var mu sync.Mutex
	accepts := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		accepts[r.URL.Path] = r.Header.Get("Accept")
		mu.Unlock()
		// JSON, which both clients accept.
		w.Header().Set("Content-Type", "application/json")
		kind := "PodList"
		if strings.Contains(r.URL.Path, "clusternetworkpolicies") {
			kind = "ClusterNetworkPolicyList"
		}
		_, _ = w.Write([]byte(`{"kind":"` + kind + `","items":[]}`))
	}))
	defer srv.Close()

	wrapped := 0
	cfg := &rest.Config{Host: srv.URL}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		wrapped++
		return rt
	})
	clients, err := newClients(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := clients.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list pods: %v", err)
	}
	if _, err := clients.cnp.PolicyV1beta1().ClusterNetworkPolicies().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list ClusterNetworkPolicies: %v", err)
	}
	if wrapped != 1 {
		t.Errorf("the transport was wrapped %d times, want once (one HTTP client shared by both)", wrapped)
	}
	for path, want := range map[string]string{
		"/api/v1/pods": "application/vnd.kubernetes.protobuf,application/json",
		"/apis/policy.networking.k8s.io/v1beta1/clusternetworkpolicies": "application/json, */*",
	} {
		if got := accepts[path]; got != want {
			t.Errorf("Accept of %s = %q, want %q", path, got, want)
		}
	}
}
