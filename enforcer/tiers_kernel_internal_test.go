package enforcer

import (
	"log/slog"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// TestPrivilegedKernelAcceptsTiers programs every world of cnpCases, one
// after the other (each replacing the last), into a real kernel in a fresh
// network namespace: each flush is accepted, and the table reads back as
// the engine's desired state (interval verdict maps jumping to class
// chains, class chains ending in return, pod chains with vmap lookups).
func TestPrivilegedKernelAcceptsTiers(t *testing.T) {
	programWorlds(t, cnpCases(), func(k *nft.Kernel) *Engine { return newCNPWorldOn(t, slog.New(slog.DiscardHandler), k) })
}

// TestPrivilegedKernelAcceptsExperimentalTiers does the same with the
// experimental worlds: nodes' addresses in the class maps, named-port set
// lookups in the class chains.
func TestPrivilegedKernelAcceptsExperimentalTiers(t *testing.T) {
	programWorlds(t, expCases(), func(k *nft.Kernel) *Engine { return newExpWorld(t, k, true) })
}

// programWorlds loads each case into the engine newEngine makes over a
// kernel in a fresh network namespace, flushes, and deletes it again.
func programWorlds(t *testing.T, cases []cnpCase, newEngine func(*nft.Kernel) *Engine) {
	t.Helper()
	ns := nfttest.NewNetNS(t)
	k, err := nft.NewKernel(nft.WithNetNS(ns.FD), nft.WithTable("nftw-tiers"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	e := newEngine(k)
	check := func(step string) {
		t.Helper()
		res := FlushToKernel(t, step, e, k)
		t.Logf("%s: %d operations", step, res.Operations)
	}
	check("world")
	for _, tc := range cases {
		tc.load(t, e)
		check(tc.name)
		for _, c := range tc.cnps {
			e.DeleteClusterNetworkPolicy(c.Name)
		}
		for _, np := range tc.nps {
			e.DeleteNetworkPolicy(np.Namespace, np.Name)
		}
		check(tc.name + ": deleted")
	}
}
