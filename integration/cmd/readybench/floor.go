package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// measureFloor prints what the daemon's informers cannot beat: the time a bare
// client-go client takes to receive and decode every pod, as the reflector
// gets them, in JSON (the daemon's content type before #16) and protobuf: a
// paginated list (500 per page, the reflector's default when it lists) and a
// streaming watch-list (sendInitialEvents, what client-go uses since 1.35).
// Nothing is kept: the floor includes the API server's encoding and the
// client's decoding, not a cache.
func measureFloor(ctx context.Context, admin *rest.Config, want int) error {
	for _, ct := range []string{"application/json", "application/vnd.kubernetes.protobuf"} {
		rc := rest.CopyConfig(admin)
		rc.ContentType = ct
		client, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return fmt.Errorf("client: %w", err)
		}
		for _, m := range []struct {
			name string
			f    func(context.Context, kubernetes.Interface) (int, error)
		}{{"list, 500 per page", pagedList(500)}, {"list, 10000 per page", pagedList(10000)}, {"watch-list", watchList}} {
			start := time.Now()
			n, err := m.f(ctx, client)
			if err != nil {
				return fmt.Errorf("%s %s: %w", ct, m.name, err)
			}
			if n != want {
				return fmt.Errorf("%s %s: %d pods, want %d", ct, m.name, n, want)
			}
			fmt.Printf("floor %-36s %-22s %d pods in %s\n", ct, m.name, n, time.Since(start).Round(10*time.Millisecond))
		}
	}
	return nil
}

func pagedList(limit int64) func(context.Context, kubernetes.Interface) (int, error) {
	return func(ctx context.Context, c kubernetes.Interface) (int, error) {
		n := 0
		opts := metav1.ListOptions{Limit: limit}
		for {
			l, err := c.CoreV1().Pods("").List(ctx, opts)
			if err != nil {
				return n, err
			}
			n += len(l.Items)
			if l.Continue == "" {
				return n, nil
			}
			opts.Continue = l.Continue
		}
	}
}

// watchList streams the pods as a watch's initial events, up to the bookmark
// that ends them.
func watchList(ctx context.Context, c kubernetes.Interface) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	w, err := c.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{
		SendInitialEvents:    ptr.To(true),
		AllowWatchBookmarks:  true,
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
	})
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	n := 0
	for ev := range w.ResultChan() {
		switch ev.Type {
		case watch.Added:
			n++
		case watch.Bookmark:
			if p, ok := ev.Object.(*corev1.Pod); ok && p.Annotations[metav1.InitialEventsAnnotationKey] == "true" {
				return n, nil
			}
		case watch.Error:
			return n, fmt.Errorf("watch error: %v", ev.Object)
		}
	}
	return n, fmt.Errorf("watch ended after %d pods without the end of the initial events", n)
}
