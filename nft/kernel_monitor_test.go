package nft_test

// The monitor tests program `program()` (IP plan in kernel_test.go) and make
// foreign changes with the nft binary inside the test namespace; the
// overflow test fills another table with 198.18.0.0-198.18.78.31.

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// watch runs k.WatchChanges until the test ends (or stop is called) and
// returns its reports. It returns once the watch is subscribed, which a full
// read taken afterwards proves through Untouched.
func watch(t testing.TB, k *nft.Kernel) (reports <-chan nft.ForeignChange, stop func()) {
	t.Helper()
	return watchQueue(t, k, 1024)
}

// watchQueue is watch with a queue of reports of the given length: with 0,
// the monitor waits in its callback until the test takes the report.
func watchQueue(t testing.TB, k *nft.Kernel, queue int) (reports <-chan nft.ForeignChange, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan nft.ForeignChange, queue)
	done := make(chan error, 1)
	go func() {
		done <- k.WatchChanges(ctx, func(c nft.ForeignChange) {
			select {
			case ch <- c:
			case <-ctx.Done():
			}
		})
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchChanges: %v", err)
		}
	}
	t.Cleanup(stop)
	for deadline := time.Now().Add(5 * time.Second); !k.Untouched(); time.Sleep(10 * time.Millisecond) {
		if _, err := k.Read(ctx); err != nil && !nft.IsNotFound(err) {
			t.Fatalf("Read: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("WatchChanges returned before a change: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Untouched stayed false with a watch running and a read after it started")
		}
	}
	return ch, stop
}

// nextChange waits for the next report.
func nextChange(t testing.TB, reports <-chan nft.ForeignChange) nft.ForeignChange {
	t.Helper()
	select {
	case c := <-reports:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported within 10 s")
		return nft.ForeignChange{}
	}
}

// nftBatch runs nft commands separated by ';' as one batch in the namespace.
func nftBatch(t *testing.T, ns *nfttest.NetNS, cmds string) {
	t.Helper()
	if out, err := ns.Exec("nft", cmds); err != nil {
		t.Fatalf("nft %s: %v\n%s", cmds, err, out)
	}
}

// expectOnly makes one more foreign change and checks that it is the next
// report: nothing else was reported before it (the kernel delivers the
// notifications in commit order).
func expectOnly(t *testing.T, ns *nfttest.NetNS, reports <-chan nft.ForeignChange) {
	t.Helper()
	// The table may have been deleted: create it too (a no-op otherwise).
	nftBatch(t, ns, "add table inet "+testTable+"; add set inet "+testTable+" sentinel { type ipv4_addr; }")
	if c, want := nextChange(t, reports), `add set "sentinel"`; !strings.HasSuffix(c.What, want) || c.Lost {
		t.Errorf("reported %+v before the sentinel change %q", c, want)
	}
}

// expectLoss checks that the next report is a loss (or gap) and that
// Untouched is false.
func expectLoss(t *testing.T, k *nft.Kernel, reports <-chan nft.ForeignChange) {
	t.Helper()
	c := nextChange(t, reports)
	if !c.Lost {
		t.Fatalf("reported %+v, want a loss", c)
	}
	t.Logf("reported: %v", c)
	if k.Untouched() {
		t.Error("Untouched after a loss")
	}
}

// TestKernelWatchForeignChanges makes each kind of drift an outsider could
// cause and checks that the monitor reports it once, naming what it did and
// who did it, and that Untouched turns false.
func TestKernelWatchForeignChanges(t *testing.T) {
	const T = "inet " + testTable
	for _, tc := range []struct{ name, cmds, what string }{
		{"delete table", "delete table " + T, `delete table "` + testTable + `"`},
		{"flush set", "flush set " + T + " peer-v4-web", `delete elements of set "peer-v4-web"`},
		{"delete chain", "delete element " + T + " egress-v4 { 198.18.0.11 }; delete chain " + T + " pod-eg-b",
			`delete elements of set "egress-v4"; delete rule of chain "pod-eg-b"; delete chain "pod-eg-b"`},
		{"insert rule at the top of a base chain", "insert rule " + T + " ingress accept", `add rule to chain "ingress"`},
		{"delete vmap element", "delete element " + T + " ingress-v4 { 198.18.0.10 }", `delete elements of set "ingress-v4"`},
		{"add element", "add element " + T + " peer-v4-web { 198.18.0.99 }", `add elements to set "peer-v4-web"`},
		{"flush chain", "flush chain " + T + " pod-in-a", `delete rule of chain "pod-in-a"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns, k := newKernel(t)
			applyState(t, k, program())
			reports, _ := watch(t, k)
			nftBatch(t, ns, tc.cmds)
			c := nextChange(t, reports)
			if c.What != tc.what || c.Lost || c.Process != "nft" || c.PID == 0 {
				t.Errorf("reported %+v, want %q by nft", c, tc.what)
			}
			t.Logf("reported: %v", c)
			if k.Untouched() {
				t.Error("Untouched after a foreign change")
			}
			expectOnly(t, ns, reports)
		})
	}
}

// TestKernelWatchIgnoresOwnAndOtherTables runs every kind of batch of this
// Kernel (deltas, a refused batch and the one after its reconnect,
// reconciles, cleanup) and changes to other tables of the namespace,
// including one of the same name in another family, and checks that none of
// them is reported.
func TestKernelWatchIgnoresOwnAndOtherTables(t *testing.T) {
	ns, k := newKernel(t)
	reports, _ := watch(t, k)
	ctx := context.Background()
	applyState(t, k, program())
	var delta nft.Transaction
	delta.AddElements("peer-v4-web", v4("198.18.0.77"))
	delta.DeleteElements("ingress-v4", gotoChain("198.18.0.10", "pod-in-a"))
	if err := k.Apply(ctx, &delta); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	var refused nft.Transaction
	refused.DeleteChain("nope")
	if err := k.Apply(ctx, &refused); err == nil {
		t.Fatal("Apply of a missing chain's deletion succeeded")
	}
	var after nft.Transaction
	after.AddElements("peer-v4-web", v4("198.18.0.78"))
	if err := k.Apply(ctx, &after); err != nil {
		t.Fatalf("Apply after a refused batch: %v", err)
	}
	for _, st := range []*nft.State{skeleton(), program()} {
		if _, err := k.Reconcile(ctx, st); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
	}
	if err := k.Cleanup(ctx); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if _, err := k.Reconcile(ctx, program()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	nftBatch(t, ns, "add table inet other; add chain inet other c; add set inet other s { type ipv4_addr; }; "+
		"add element inet other s { 198.18.0.1 }; add rule inet other c ip saddr @s accept")
	nftBatch(t, ns, "add table ip "+testTable+"; add chain ip "+testTable+" egress; add rule ip "+testTable+" egress accept")
	nftBatch(t, ns, "delete table inet other; delete table ip "+testTable)
	expectOnly(t, ns, reports)
}

// TestKernelWatchMutedBatch sends large batches, which go with the monitor
// unsubscribed (mute.go): alone they are neither reported nor make Untouched
// false, also when they change nothing (the generation does not move); a
// foreign batch committed in that window, which the monitor cannot see, is
// reported as a gap; a refused batch is no gap.
func TestKernelWatchMutedBatch(t *testing.T) {
	ns, k := newKernel(t)
	ctx := context.Background()
	big := nodeState(1_000, true, false)
	applyState(t, k, big)
	reports, _ := watch(t, k)
	// 1,000 elements that the peer sets hold already.
	var noop nft.Transaction
	for g := range 10 {
		name := fmt.Sprintf("peer-v4-%05d", g)
		noop.AddElements(name, slices.Collect(big.Sets[name].Elements.Values())...)
	}
	refused := nft.Diff(nil, big, nil)
	refused.DeleteChain("nope")
	for _, tc := range []struct {
		name             string
		tx               *nft.Transaction
		foreign, refused bool
	}{
		{"node program", nft.Diff(nil, big, nil), false, false},
		{"node program, another batch meanwhile", nft.Diff(nil, big, nil), true, false},
		{"no change", &noop, false, false},
		{"no change, another batch meanwhile", &noop, true, false},
		{"refused", refused, false, true},
	} {
		muted := 0
		k.SetMutedHook(func() {
			muted++
			if tc.foreign {
				nftBatch(t, ns, "add element inet "+testTable+" peer-v4-00000 { 198.19.250.1 }")
			}
		})
		if err := k.Apply(ctx, tc.tx); (err != nil) != tc.refused || muted != 1 {
			t.Fatalf("%s: Apply: %v, sent muted %d times, want 1", tc.name, err, muted)
		}
		switch {
		case tc.foreign:
			expectLoss(t, k, reports)
		case tc.refused:
			if k.Untouched() {
				t.Errorf("%s: Untouched after a refused batch", tc.name)
			}
		case !k.Untouched():
			t.Errorf("%s: Untouched false with nobody else committing", tc.name)
		}
		k.SetMutedHook(nil)
		if _, err := k.Reconcile(ctx, big); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		if !k.Untouched() {
			t.Errorf("%s: Untouched false after the Reconcile that followed", tc.name)
		}
	}
	expectOnly(t, ns, reports)
}

// TestKernelUntouched follows Untouched through the events that set and
// clear it, with a real monitor.
func TestKernelUntouched(t *testing.T) {
	ns, k := newKernel(t)
	ctx := context.Background()
	reconcile := func() {
		t.Helper()
		if _, err := k.Reconcile(ctx, program()); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
	}
	check := func(when string, want bool) {
		t.Helper()
		if got := k.Untouched(); got != want {
			t.Errorf("%s: Untouched = %v, want %v", when, got, want)
		}
	}
	reconcile()
	check("after a Reconcile without a watch", false)
	reports, stop := watch(t, k)
	check("after a read with the watch running", true)
	reconcile()
	check("after a Reconcile with the watch running", true)
	var delta nft.Transaction
	delta.AddElements("peer-v4-web", v4("198.18.0.77"))
	if err := k.Apply(ctx, &delta); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	check("after an own Apply", true)
	nftBatch(t, ns, "delete element inet "+testTable+" ingress-v4 { 198.18.0.10 }")
	nextChange(t, reports)
	check("after a foreign change", false)
	reconcile()
	check("after the next Reconcile", true)
	assertConverged(t, k, program())
	var refused nft.Transaction
	refused.DeleteChain("nope")
	if err := k.Apply(ctx, &refused); err == nil {
		t.Fatal("Apply of a missing chain's deletion succeeded")
	}
	check("after a refused Apply", false)
	reconcile()
	check("after the Reconcile that follows it", true)
	stop()
	check("after the watch stopped", false)
	reconcile()
	check("after a Reconcile without a watch", false)
}

// TestKernelWatchOverflow overflows the monitor's socket with a big foreign
// batch to another table while the monitor waits in its callback: the loss
// is reported, Untouched is false until the next full read, and the monitor
// goes on reporting.
func TestKernelWatchOverflow(t *testing.T) {
	// 128 KiB as the kernel counts (it doubles what is asked).
	ns, k := newKernel(t, nft.WithMonitorBuffer(64<<10))
	ctx := context.Background()
	applyState(t, k, program())
	reports, _ := watchQueue(t, k, 0)
	// Reported, but not taken yet: the monitor waits in its callback.
	nftBatch(t, ns, "add element inet "+testTable+" peer-v4-web { 198.18.1.1 }")

	// 20,000 elements: more than 300 datagrams of notifications, 1.5 MB.
	var b strings.Builder
	b.WriteString("add table inet other\nadd set inet other big { type ipv4_addr; }\nadd element inet other big {")
	a := netip.MustParseAddr("198.18.0.0")
	for i := range 20_000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(a.String())
		a = a.Next()
	}
	b.WriteString("}\n")
	script := filepath.Join(t.TempDir(), "big.nft")
	if err := os.WriteFile(script, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := ns.Exec("nft", "-f", script); err != nil {
		t.Fatalf("nft -f: %v\n%s", err, out)
	}
	want := `add elements to set "peer-v4-web"`
	if c := nextChange(t, reports); c.What != want || c.Lost {
		t.Errorf("reported %+v, want %q", c, want)
	}
	expectLoss(t, k, reports)

	// The monitor goes on: once it has drained what was queued (and
	// reported any further loss), a small change is reported.
	nftBatch(t, ns, "add element inet "+testTable+" peer-v4-web { 198.18.1.2 }")
	c := nextChange(t, reports)
	for c.Lost {
		c = nextChange(t, reports)
	}
	if c.What != want {
		t.Errorf("reported %+v after the loss, want %q", c, want)
	}
	if _, err := k.Reconcile(ctx, program()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if !k.Untouched() {
		t.Error("Untouched false after the Reconcile that followed the loss")
	}
	assertConverged(t, k, program())
}
