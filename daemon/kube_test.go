package daemon

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/nftwarden/nftwarden/podwatch/podwatchtest"
)

// TestClientsContentTypes: the core client reads protobuf (client-go's
// generated clients prefer it for built-in kinds when the config names no
// content type; at start the daemon decodes every pod of the cluster, and a
// bare watch-list of 100,000 pods takes 8 s in protobuf against 67 s in JSON,
// daemon/README.md "Time to ready"), the ClusterNetworkPolicy client JSON
// (custom resources have no protobuf).
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

	clients, err := newClients(&rest.Config{Host: srv.URL})
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
	for path, want := range map[string]string{
		"/api/v1/pods": "application/vnd.kubernetes.protobuf,application/json",
		"/apis/policy.networking.k8s.io/v1beta1/clusternetworkpolicies": "application/json, */*",
	} {
		if got := accepts[path]; got != want {
			t.Errorf("Accept of %s = %q, want %q", path, got, want)
		}
	}
}

// BenchmarkDecodePods is the client's share of listing pods in each content
// type: decoding a list of realistic pods (podwatchtest's, as kubelets
// write them) as client-go decodes a response. At start the daemon decodes
// every pod of the cluster once.
func BenchmarkDecodePods(b *testing.B) {
	const n = 1000
	list := &corev1.PodList{}
	for i := range n {
		p := podwatchtest.Pod(podwatchtest.NamespaceName(i/100), i, "node-1")
		p.Status = podwatchtest.PodStatus(i, metav1.Now())
		list.Items = append(list.Items, *p)
	}
	for name, mediaType := range map[string]string{"json": runtime.ContentTypeJSON, "protobuf": runtime.ContentTypeProtobuf} {
		info, ok := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), mediaType)
		if !ok {
			b.Fatalf("no serializer for %s", mediaType)
		}
		codecs := scheme.Codecs.WithoutConversion()
		data, err := runtime.Encode(codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion), list)
		if err != nil {
			b.Fatal(err)
		}
		decoder := codecs.DecoderToVersion(info.Serializer, corev1.SchemeGroupVersion)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var out corev1.PodList
				if _, _, err := decoder.Decode(data, nil, &out); err != nil {
					b.Fatal(err)
				}
				if len(out.Items) != n {
					b.Fatalf("decoded %d pods, want %d", len(out.Items), n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pod")
		})
	}
}
