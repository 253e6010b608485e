package enforcer_test

// IP plan: see helpers_test.go and semantics_test.go (the base world).

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
)

// TestPodByIP names the pod at an address, on this node or another, of
// either family; an address of no active pod (outside, hostNetwork, a
// finished pod) is none; an address two pods claim names the lower ID.
func TestPodByIP(t *testing.T) {
	c := newCluster(t, "node-a")
	loadBase(t, c)
	e := c.engines["node-a"]
	if err := e.UpsertPod(mkPod("prod", "a-twin", podIPs("198.18.1.30"))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr string
		want string // "ns/name", "" for none
	}{
		{"198.18.1.10", "prod/web"},
		{"2001:db8:2::20", "dev/web"},
		{"198.18.2.10", "prod/cli"},
		{"198.19.0.5", ""},
		{"198.18.0.1", ""},  // hostNetwork
		{"198.18.1.99", ""}, // finished
		{"198.18.1.30", "other/x"},
	} {
		ns, name, ok := e.PodByIP(netip.MustParseAddr(tc.addr))
		if got := ns + "/" + name; ok != (tc.want != "") || ok && got != tc.want {
			t.Errorf("PodByIP(%s) = %q, %v; want %q", tc.addr, got, ok, tc.want)
		}
	}
}

// TestEnforcementAnnotationValues: "audit" audits, "enforce" and any other
// value enforce, an unknown value is logged once per version.
func TestEnforcementAnnotationValues(t *testing.T) {
	var logs bytes.Buffer
	e, err := enforcer.New(enforcer.Config{NodeName: "node-a", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	loadBaseWorld(e)
	web := netip.MustParseAddr("198.18.1.10")
	cli := netip.MustParseAddr("198.18.1.20")
	for _, tc := range []struct {
		value   string
		allowed bool
		warns   int
	}{
		{"audit", true, 0},
		{"enforce", false, 0},
		{"Audit", false, 1},
		{"Audit", false, 1}, // the same version again: not logged again
		{"dry-run", false, 2},
	} {
		np := mkPolicy("prod", "lock", selecting(sel("app", "web")))
		np.Annotations = map[string]string{enforcer.EnforcementAnnotation: tc.value}
		if err := e.UpsertNetworkPolicy(np); err != nil {
			t.Fatal(err)
		}
		d := e.Decide(enforcer.Flow{Src: cli, Dst: web, Protocol: TCP, Port: 80})
		if d.Allowed != tc.allowed || (d.Ingress.Audit != nil) != tc.allowed {
			t.Errorf("%q: allowed %v, audit %+v (%s)", tc.value, d.Allowed, d.Ingress.Audit, d.Reason)
		}
		if n := strings.Count(logs.String(), "unknown enforcement annotation"); n != tc.warns {
			t.Errorf("%q: %d warnings, want %d", tc.value, n, tc.warns)
		}
	}
}
