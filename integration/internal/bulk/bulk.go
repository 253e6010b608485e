// Package bulk loads a large cluster into a real API server for the
// benchmarks (integration/cmd/memload, integration/cmd/latencybench): the
// namespaces, NetworkPolicies and pods of podwatch/podwatchtest, written by
// many concurrent clients with retries; and LoadAvg, which their results
// print.
package bulk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nftwarden/nftwarden/podwatch/podwatchtest"
)

// Parallel runs f(0..n-1) on workers goroutines, prints progress every 15 s, and
// returns the first error (the rest of the work is then skipped). Each call is
// retried (WithRetry).
func Parallel(ctx context.Context, workers, n int, what string, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := WithRetry(ctx, func(ctx context.Context) error { return f(ctx, i) }); err != nil {
					cancel(err)
					return
				}
				done.Add(1)
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	start := time.Now()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-finished:
			return context.Cause(ctx)
		case <-tick.C:
			d := done.Load()
			fmt.Printf("  %s: %d/%d (%.0f/s)\n", what, d, n, float64(d)/time.Since(start).Seconds())
		}
	}
}

// WithRetry retries a call that timed out or met a busy API server a few times; a
// loaded 2-core machine makes single requests slow now and then.
func WithRetry(ctx context.Context, f func(context.Context) error) error {
	var err error
	for attempt := range 5 {
		actx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err = f(actx)
		cancel()
		if err == nil || ctx.Err() != nil || strings.Contains(err.Error(), "already exists") {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * time.Second)
	}
	return err
}

// CreateNamespaces creates podwatchtest's namespaces 0..n-1, each with its
// "default" ServiceAccount (no controller-manager runs to create it, and pods
// cannot be created without it).
func CreateNamespaces(ctx context.Context, client kubernetes.Interface, workers, n int) error {
	return Parallel(ctx, workers, n, "namespaces", func(ctx context.Context, i int) error {
		ns := podwatchtest.Namespace(i)
		if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create namespace %s: %w", ns.Name, err)
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}}
		if _, err := client.CoreV1().ServiceAccounts(ns.Name).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create service account in %s: %w", ns.Name, err)
		}
		return nil
	})
}

// CreatePolicies creates perNS of podwatchtest's policies in each of
// namespaces 0..namespaces-1.
func CreatePolicies(ctx context.Context, client kubernetes.Interface, workers, namespaces, perNS int) error {
	return Parallel(ctx, workers, namespaces*perNS, "policies", func(ctx context.Context, i int) error {
		np := podwatchtest.Policy(podwatchtest.NamespaceName(i/perNS), i%perNS)
		if _, err := client.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create policy %s/%s: %w", np.Namespace, np.Name, err)
		}
		return nil
	})
}

// CreatePods creates podwatchtest's pods 0..n-1, perNS to a namespace, pod i
// on node nodeOf(i), each then given its running status with podwatchtest's
// address i through pods/status, as a kubelet writes it.
func CreatePods(ctx context.Context, client kubernetes.Interface, workers, n, perNS int, nodeOf func(int) string) error {
	return Parallel(ctx, workers, n, "pods", func(ctx context.Context, i int) error {
		p := podwatchtest.Pod(podwatchtest.NamespaceName(i/perNS), i, nodeOf(i))
		created, err := client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		created.Status = podwatchtest.PodStatus(i, created.CreationTimestamp)
		if _, err := client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("status of pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		return nil
	})
}

// LoadAvg is the machine's load average (1, 5 and 15 minutes), which a
// benchmark prints with its results.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// MaxPods is how many pods CreatePods can address: 198.18.64.0 up to
// 198.19.255.255, skipping .0 and .255 of every /24.
const MaxPods = (256 - 64 + 256) * 254

// CheckShape checks what a loading command is about to do: it runs as root
// (the daemon runs in a network namespace and programs nftables there), the
// cluster's shape is positive, and its pods fit the address plan.
func CheckShape(pods, podsPerNS, nodes, workers int) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the daemon runs in a network namespace and programs nftables there")
	}
	if pods < 1 || podsPerNS < 1 || nodes < 1 || workers < 1 {
		return errors.New("-pods, -pods-per-namespace, -nodes and -workers must be positive")
	}
	if pods > MaxPods {
		return fmt.Errorf("at most %d pods fit in 198.18.64.0-198.19.255.255", MaxPods)
	}
	return nil
}
