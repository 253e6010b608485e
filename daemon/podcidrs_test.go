package daemon

// Node "node-a" gets the pod CIDRs 198.18.4.0/24 and 2001:db8:4::/64.

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func testNode(name string, cidrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if len(cidrs) > 0 {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = cidrs[0], cidrs
	}
	return n
}

// cidrRecorder records what the discovery hands the engine and the
// reconciles it asks for.
type cidrRecorder struct {
	mu         sync.Mutex
	set        [][]netip.Prefix
	reconciles atomic.Int32
	refuse     error
}

func (r *cidrRecorder) discovery(client *fake.Clientset) *podCIDRDiscovery {
	return &podCIDRDiscovery{client: client, node: "node-a", log: slog.New(slog.DiscardHandler),
		set: func(p []netip.Prefix) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.set = append(r.set, p)
			return r.refuse
		},
		reconcile: func() { r.reconciles.Add(1) },
		firstWait: time.Second, retry: 20 * time.Millisecond}
}

func (r *cidrRecorder) calls() [][]netip.Prefix {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.set)
}

func TestPodCIDRDiscovery(t *testing.T) {
	want := prefixes("198.18.4.0/24", "2001:db8:4::/64")
	tests := []struct {
		name string
		node *corev1.Node // nil: not registered yet
		// later sets the Node's CIDRs once the first read found none.
		later bool
		// getErr fails the first reads of the Node.
		getErr bool
		want   []netip.Prefix
		// wantReconcile: they came after the start.
		wantReconcile bool
	}{
		{name: "the Node has them", node: testNode("node-a", "198.18.4.0/24", "2001:db8:4::/64"), want: want},
		{name: "only the older spec.podCIDR", node: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Spec: corev1.NodeSpec{PodCIDR: "198.18.4.0/24"}},
			want: prefixes("198.18.4.0/24")},
		{name: "host bits masked", node: testNode("node-a", "198.18.4.1/24"), want: prefixes("198.18.4.0/24")},
		{name: "none yet, set later", node: testNode("node-a"), later: true, want: want, wantReconcile: true},
		{name: "not registered yet", later: true, want: want, wantReconcile: true},
		{name: "the API server fails at first", node: testNode("node-a", "198.18.4.0/24", "2001:db8:4::/64"), getErr: true, want: want, wantReconcile: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var objs []runtime.Object
			if tc.node != nil {
				objs = append(objs, tc.node)
			}
			client := fake.NewClientset(objs...)
			var failing atomic.Bool
			failing.Store(tc.getErr)
			client.PrependReactor("get", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
				if failing.Load() {
					return true, nil, errors.New("connection refused")
				}
				return false, nil, nil
			})
			rec := &cidrRecorder{}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer wg.Wait()
			defer cancel()
			rec.discovery(client).start(ctx, &wg)

			if tc.later || tc.getErr {
				if got := rec.calls(); len(got) != 0 {
					t.Fatalf("pod CIDRs set before the Node has them: %v", got)
				}
				time.Sleep(50 * time.Millisecond) // a few reads find none
				failing.Store(false)
				if tc.later {
					n := testNode("node-a", "198.18.4.0/24", "2001:db8:4::/64")
					var err error
					if tc.node == nil {
						_, err = client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
					} else {
						_, err = client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				eventually(t, "the pod CIDRs set", func() bool { return len(rec.calls()) > 0 })
			}
			got := rec.calls()
			if len(got) != 1 || !slices.Equal(got[0], tc.want) {
				t.Errorf("set %v, want once %v", got, tc.want)
			}
			if n := rec.reconciles.Load(); (n == 1) != tc.wantReconcile || n > 1 {
				t.Errorf("%d reconciles requested, want one: %v", n, tc.wantReconcile)
			}
		})
	}
}

// TestPodCIDRDiscoveryStopsWithTheDaemon: a Node without pod CIDRs is read
// until the daemon stops, then no more.
func TestPodCIDRDiscoveryStopsWithTheDaemon(t *testing.T) {
	client := fake.NewClientset(testNode("node-a"))
	var gets atomic.Int32
	client.PrependReactor("get", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		gets.Add(1)
		return false, nil, nil
	})
	rec := &cidrRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	rec.discovery(client).start(ctx, &wg)
	eventually(t, "a few reads", func() bool { return gets.Load() >= 3 })
	cancel()
	wg.Wait()
	n := gets.Load()
	time.Sleep(50 * time.Millisecond)
	if gets.Load() != n || len(rec.calls()) != 0 {
		t.Errorf("reads went on after the stop (%d, then %d), or CIDRs were set: %v", n, gets.Load(), rec.calls())
	}
}

// eventually waits up to 10 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
