package enforcer_test

// Pods of node-a (198.18.1.0/24), as in helpers_test.go.

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// TestParsedPod checks NewPod's accessors and that UpsertParsedPod programs
// exactly what UpsertPod does for the same pod.
func TestParsedPod(t *testing.T) {
	web := mkPod("shop", "web", onNode("node-a"), podIPs("198.18.1.10", "2001:db8:1::10"), podLabels("app", "web", "tier", "frontend"),
		containerPort("http", corev1.ProtocolTCP, 8080))
	bad := mkPod("shop", "bad", onNode("node-a"), podIPs("198.18.1.11", "not-an-ip"))

	p := enforcer.NewPod(web)
	if p.Namespace() != "shop" || p.Name() != "web" || p.Err() != nil {
		t.Errorf("NewPod: namespace %q, name %q, err %v; want shop, web, nil", p.Namespace(), p.Name(), p.Err())
	}
	if diff := cmp.Diff(web.Labels, p.Labels()); diff != "" {
		t.Errorf("Labels (-want +got):\n%s", diff)
	}
	if !p.Equal(enforcer.NewPod(web.DeepCopy())) {
		t.Error("two parses of one pod are not Equal")
	}
	relabelled := web.DeepCopy()
	relabelled.Labels["tier"] = "backend"
	if p.Equal(enforcer.NewPod(relabelled)) {
		t.Error("pods with different labels are Equal")
	}
	if enforcer.NewPod(bad).Err() == nil {
		t.Error("NewPod of a pod with a malformed IP: no error")
	}

	newEngine := func() *enforcer.Engine {
		e, err := enforcer.New(enforcer.Config{NodeName: "node-a", Dataplane: nft.NewFake("nftwarden")})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.UpsertNamespace(mkNamespace("shop")); err != nil {
			t.Fatal(err)
		}
		if err := e.UpsertNetworkPolicy(mkPolicy("shop", "allow", selecting(sel("app", "web")),
			ingress(peers(podPeer(sel("tier", "frontend"))), namedPort(corev1.ProtocolTCP, "http")))); err != nil {
			t.Fatal(err)
		}
		return e
	}
	byAPI, parsed := newEngine(), newEngine()
	for _, pod := range []*corev1.Pod{web, bad} {
		errAPI := byAPI.UpsertPod(pod)
		errParsed := parsed.UpsertParsedPod(enforcer.NewPod(pod))
		if (errAPI == nil) != (errParsed == nil) {
			t.Errorf("pod %s: UpsertPod error %v, UpsertParsedPod error %v", pod.Name, errAPI, errParsed)
		}
	}
	for _, e := range []*enforcer.Engine{byAPI, parsed} {
		if _, err := e.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(nft.Render("t", byAPI.Desired()), nft.Render("t", parsed.Desired())); diff != "" {
		t.Errorf("desired state (-UpsertPod +UpsertParsedPod):\n%s", diff)
	}
	if err := parsed.UpsertParsedPod(&enforcer.Pod{}); err == nil {
		t.Error("UpsertParsedPod of a zero Pod: no error")
	}
	if err := parsed.UpsertParsedPod(nil); err == nil {
		t.Error("UpsertParsedPod(nil): no error")
	}
}

// TestInvalidObjectsLoggedOnce: an upsert logs what it leaves out once per
// version of the object; the same version again returns the error silently.
func TestInvalidObjectsLoggedOnce(t *testing.T) {
	var log bytes.Buffer
	e, err := enforcer.New(enforcer.Config{NodeName: "node-a", Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	bad := mkPod("shop", "bad", onNode("node-a"), podIPs("198.18.1.11", "not-an-ip"))
	badPolicy := mkPolicy("shop", "sideways", types("Sideways"))
	for range 3 {
		if err := e.UpsertPod(bad.DeepCopy()); err == nil {
			t.Fatal("UpsertPod of a malformed IP: no error")
		}
		if err := e.UpsertNetworkPolicy(badPolicy.DeepCopy()); err == nil {
			t.Fatal("UpsertNetworkPolicy with an unknown policyType: no error")
		}
	}
	relabeled := bad.DeepCopy()
	relabeled.Labels = map[string]string{"app": "other"}
	_ = e.UpsertPod(relabeled) // a new version: logged again
	for _, tc := range []struct {
		line string
		want int
	}{
		{"pod has invalid fields", 2},
		{"invalid network policy compiled to fail closed", 1},
	} {
		if got := strings.Count(log.String(), tc.line); got != tc.want {
			t.Errorf("%q logged %d times, want %d; log:\n%s", tc.line, got, tc.want, log.String())
		}
	}
}
