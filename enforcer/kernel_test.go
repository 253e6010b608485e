package enforcer_test

// IP plan: see helpers_test.go and semantics_test.go (the base world).

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/google/go-cmp/cmp"
	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// TestPrivilegedKernelAcceptsProgram programs the engine's output into a real
// kernel, in a fresh network namespace: a full sync, then deltas (label change,
// pod add and delete, policy update and delete), each read back and compared
// with the desired state. It proves the kernel takes every kind of object the
// compiler emits (concatenated interval sets, named-port sets, verdict maps).
func TestPrivilegedKernelAcceptsProgram(t *testing.T) {
	_, k, e := newKernelEngine(t)
	loadBaseWorld(e)
	pols := append(basePolicies(),
		mkPolicy("dev", "eg", selecting(sel("app", "cli")),
			egress(peers(podPeer(sel("app", "web")), ipBlock("2001:db8:ff::/48", "2001:db8:ff:1::/64")), tcp(80), protoOnly(UDP), port(SCTP, 3868)),
			egress(nil, namedPort(UDP, "dns")),
			egress(peers(podPeer(sel("app", "web")), ipBlock("198.18.1.0/24")), namedPort(TCP, "http"))),
		mkPolicy("other", "both", types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress), ingress(nil)))
	for _, np := range pols {
		if err := e.UpsertNetworkPolicy(np); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string) {
		t.Helper()
		res := enforcer.FlushToKernel(t, step, e, k)
		t.Logf("%s: %d operations (full %v) in %v", step, res.Operations, res.Full, res.Duration)
	}
	check("full sync")
	_ = e.UpsertPod(mkPod("prod", "web", podLabels("app", "none"), podIPs("198.18.1.10", "2001:db8:1::10"), containerPort("http", TCP, 8080)))
	check("label change")
	_ = e.UpsertPod(mkPod("prod", "new", podLabels("app", "web"), podIPs("198.18.1.70", "2001:db8:1::70"), containerPort("http", TCP, 81)))
	check("pod add")
	e.DeletePod("dev", "cli")
	check("pod delete")
	_ = e.UpsertNetworkPolicy(mkPolicy("prod", "web", selecting(sel("app", "web")), ingress(peers(ipBlock("198.19.0.0/16")), portRange(TCP, 1, 1024))))
	check("policy update")
	e.DeleteNetworkPolicy("prod", "db")
	e.DeleteNetworkPolicy("dev", "eg")
	check("policy delete")
	if res, err := e.Flush(context.Background()); err != nil || res.Operations != 0 {
		t.Fatalf("idle flush: %+v %v", res, err)
	}
}

// newKernelEngine makes a fresh network namespace (the test is skipped without
// CAP_NET_ADMIN), a Kernel for a table in it, and an engine for node-a that
// programs that Kernel.
func newKernelEngine(t *testing.T) (*nfttest.NetNS, *nft.Kernel, *enforcer.Engine) {
	t.Helper()
	return newKernelEngineWith(t, enforcer.Config{})
}

// newKernelEngineWith is newKernelEngine with the engine configured as cfg
// (its node, dataplane and logger set).
func newKernelEngineWith(t *testing.T, cfg enforcer.Config) (*nfttest.NetNS, *nft.Kernel, *enforcer.Engine) {
	t.Helper()
	ns := nfttest.NewNetNS(t)
	k, err := nft.NewKernel(nft.WithNetNS(ns.FD), nft.WithTable("nftw-enforcer"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	cfg.NodeName, cfg.Dataplane, cfg.Logger = "node-a", k, quietLogger
	e, err := enforcer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ns, k, e
}

// TestPrivilegedKernelAcceptsOddInput programs the odd objects of
// TestOddInput (10,000 ports, 1,000 except blocks, names at the API's length
// limits, invalid parts compiled to fail closed), one after the other, into a
// real kernel: each flush is accepted and the table reads back as desired.
func TestPrivilegedKernelAcceptsOddInput(t *testing.T) {
	_, k, e := newKernelEngine(t)
	loadBaseWorld(e)
	for _, tc := range oddCases() {
		_ = tc.apply(e)
		enforcer.FlushToKernel(t, tc.name, e, k)
	}
}

// TestPrivilegedProgramAsScript feeds the engine's program, printed as an nft
// script (Transaction.String), to `nft -f` in a fresh network namespace: the
// readable names and comments are what nft itself takes, and the table it
// builds is the one the engine means. The odd objects of TestOddInput (names
// at the API's length limits, cut with a hash) come along.
func TestPrivilegedProgramAsScript(t *testing.T) {
	ns := nfttest.NewNetNS(t)
	e, err := enforcer.New(enforcer.Config{NodeName: "node-a", Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	loadBaseWorld(e)
	for _, np := range basePolicies() {
		_ = e.UpsertNetworkPolicy(np)
	}
	for _, tc := range oddCases() {
		_ = tc.apply(e)
	}
	checkProgramAsScript(t, ns, e)
}

// checkProgramAsScript feeds e's program as an nft script to `nft -f` in
// ns and holds the table nft lists against the program, but for the rules
// with a tagged lookup, which nft cannot read (withoutTaggedRules).
func checkProgramAsScript(t *testing.T, ns *nfttest.NetNS, e *enforcer.Engine) {
	t.Helper()
	const table = "nftw-script"
	tx := nft.Diff(nil, withoutTaggedRules(e.Desired()), nil)
	script := filepath.Join(t.TempDir(), "program.nft")
	if err := os.WriteFile(script, []byte(tx.Format(table)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("the nft binary is needed to apply scripts")
	}
	if out, err := ns.Exec("nft", "-f", script); err != nil {
		t.Fatalf("nft -f refused the engine's program: %v\n%s", err, out)
	}
	fake := nft.NewFake(table)
	if err := fake.Apply(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(nfttest.Normalize(fake.Dump()), nfttest.Normalize(nfttest.ListTable(t, ns, table))); diff != "" {
		t.Errorf("the table nft -f built differs from the program (-program +nft):\n%s", diff)
	}
}
