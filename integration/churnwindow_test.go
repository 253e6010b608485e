package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

// An enforcer learns that a pod is gone from the API server's watch, so a
// node's table keeps a deleted pod's address in its peer sets until the
// node's daemon has received the deletion and flushed it. A new pod given
// that address in between is let through as the old pod: nothing in its
// packets tells the two apart, and no enforcer fed by the watch can know
// sooner. The churn probes right after the new pod's status is written,
// often inside that window; whether a probe that got through was a stale
// verdict of the enforcer therefore depends on whether the server's node
// had already programmed the deletion when the probe started. The node's
// nf_tables notifications say when it did (cluster.NFTBatchWatch), without
// polling or guessing.

// TestIntegrationChurnUnseenDeletion shows the window deterministically: the
// server's node is cut from the API server (cluster.Node.CutAPI) while an
// allowed pod is replaced by a denied one on its address, so the node
// cannot have seen the deletion when the new pod probes. The probe gets
// through: the node's table still holds the address as the allowed pod's.
// TestIntegrationChurn judged exactly this as a stale allow and failed
// whenever the API server's watch delivered a deletion later than the new
// pod's status was written; it is an early allow. Once the node hears the
// API server again, the address leaves its peer sets, and from then on the
// new pod is denied: a probe that got through after the removal would be a
// stale allow.
func TestIntegrationChurnUnseenDeletion(t *testing.T) {
	env := cluster.StartForTest(t, controlPlane(t), cluster.Options{Nodes: 1})
	ctx := testCtx(t)
	ns := env.Name("unseen")
	must(t, env.CreateNamespace(ctx, ns, nil))
	node := env.Nodes[0]
	server, err := env.AddPod(ctx, cluster.PodSpec{Namespace: ns, Name: "server", Node: node, Labels: app("server"), Ports: agentPorts})
	must(t, err)
	old, err := env.AddPod(ctx, cluster.PodSpec{Namespace: ns, Name: "old", Node: node, Labels: app("allowed"), Ports: agentPorts})
	must(t, err)
	startDaemons(t, env)
	must(t, env.ApplyPolicy(ctx, policy(ns, "server-from-allowed", selecting(app("server")), ingress(from(peers(podPeer(app("allowed"))))))))
	waitVerdict(t, env, old, server, tcp80v4, true)
	removals, err := watchPeerRemovals(ctx, node)
	must(t, err)

	node.CutAPI()
	cut := true
	defer func() {
		if cut {
			node.RestoreAPI()
		}
	}()
	cur, err := env.ReplacePod(ctx, old, cluster.PodSpec{Namespace: ns, Name: "new", Labels: app("denied"), Ports: agentPorts})
	must(t, err)
	deletedAt := time.Now().Add(-cur.TakeoverGap)
	early := time.Now()
	reachable, err := env.Probe(ctx, cur, server, tcp80v4)
	must(t, err)
	if _, removed, err := removals.removed(cur.IPv4, deletedAt); err != nil || removed {
		t.Fatalf("the node removed %s from its peer sets while cut from the API server (%v)", cur.IPv4, err)
	}
	if !reachable {
		t.Fatalf("%s -> %s: denied while the node could not know of the deletion; the window this test shows did not open", cur, server)
	}
	node.RestoreAPI()
	cut = false
	removedAt, err := removals.waitRemoved(ctx, cur.IPv4, deletedAt, converge)
	must(t, err)
	if v := judgeDeniedProbe(removedAt, early, reachable); v != verdictAllowedBeforeRemoval {
		t.Errorf("the probe before the node had the deletion judged %v, want an early allow (%v)", v, verdictAllowedBeforeRemoval)
	}
	late := time.Now()
	reachable, err = env.Probe(ctx, cur, server, tcp80v4)
	must(t, err)
	if v := judgeDeniedProbe(removedAt, late, reachable); v != verdictDenied {
		t.Errorf("%s -> %s once the node had removed %s: judged %v, want denied (%v)", cur, server, cur.IPv4, v, verdictDenied)
	}
	t.Logf("deletion requested at 0; new status written +%s; early probe +%s got through; the address left the node's peer sets +%s, after the API came back",
		cur.TakeoverGap.Round(time.Millisecond), early.Sub(deletedAt).Round(time.Millisecond), removedAt.Sub(deletedAt).Round(time.Millisecond))
}

// peerRemovals records, from a node's nf_tables notifications, when each
// address left the peer sets of the daemon's table.
type peerRemovals struct {
	mu      sync.Mutex
	batches []peerRemoval
	err     error // why the watch stopped before the test ended
}

// peerRemoval is one batch that deleted peer-set elements: the end of the
// batch (when its notifications had been read) and the deleting messages.
type peerRemoval struct {
	end  time.Time
	msgs [][]byte
}

// peerSetPrefix begins the names of the peer sets (enforcer: peers-v4-<n>,
// peers-v6-<n>, shared by every group, each element tagged with its group);
// element notifications carry their set's name.
var peerSetPrefix = []byte("peers-")

// watchPeerRemovals follows the peer-set deletions of n's daemon table until
// ctx ends.
func watchPeerRemovals(ctx context.Context, n *cluster.Node) (*peerRemovals, error) {
	w, err := n.WatchNFTBatches("nftwarden")
	if err != nil {
		return nil, err
	}
	r := &peerRemovals{}
	go func() {
		defer w.Close()
		for {
			b, err := w.Next(ctx)
			if err != nil {
				if ctx.Err() == nil {
					r.mu.Lock()
					r.err = fmt.Errorf("nf_tables batches of %s: %w", n.Name, err)
					r.mu.Unlock()
				}
				return
			}
			var msgs [][]byte
			for _, m := range b.Messages {
				if m.Type == unix.NFT_MSG_DELSETELEM && bytes.Contains(m.Attrs, peerSetPrefix) {
					msgs = append(msgs, m.Attrs)
				}
			}
			if len(msgs) > 0 {
				r.mu.Lock()
				r.batches = append(r.batches, peerRemoval{end: b.End, msgs: msgs})
				r.mu.Unlock()
			}
		}
	}()
	return r, nil
}

// removed returns the end of the first batch after since that deleted a
// from a peer set; ok is false if none has yet. An error means the watch
// lost notifications and cannot tell.
func (r *peerRemovals) removed(a netip.Addr, since time.Time) (at time.Time, ok bool, err error) {
	key := a.AsSlice()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.batches {
		if b.end.Before(since) {
			continue
		}
		for _, m := range b.msgs {
			if bytes.Contains(m, key) {
				return b.end, true, nil
			}
		}
	}
	return time.Time{}, false, r.err
}

// waitRemoved waits until a has left the peer sets in a batch after since,
// for at most bound, and returns when.
func (r *peerRemovals) waitRemoved(ctx context.Context, a netip.Addr, since time.Time, bound time.Duration) (time.Time, error) {
	deadline := time.Now().Add(bound)
	for {
		at, ok, err := r.removed(a, since)
		switch {
		case ok:
			return at, nil
		case err != nil:
			return time.Time{}, err
		case time.Now().After(deadline):
			return time.Time{}, fmt.Errorf("%s did not leave the peer sets within %s of %s", a, bound, since.Format("15:04:05.000"))
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// churnVerdict is how a probe from a pod the policy denies, sent right after
// the pod took the address of an allowed pod, is judged.
type churnVerdict int

const (
	// denied: the probe did not get through.
	verdictDenied churnVerdict = iota
	// allowedBeforeRemoval: it got through before the server's node had
	// removed the address from the peer sets: the node judged the address
	// as the deleted pod's, which was all it could know then (the window
	// is reported, not failed: it is the deletion's programming latency).
	verdictAllowedBeforeRemoval
	// staleAllow: it got through although the server's node had removed
	// the address before the probe started: the enforcer let a stale
	// verdict through (a failure).
	verdictStaleAllow
)

func (v churnVerdict) String() string {
	switch v {
	case verdictDenied:
		return "denied"
	case verdictAllowedBeforeRemoval:
		return "allowed before the node removed the address (early allow)"
	case verdictStaleAllow:
		return "allowed after the node had removed the address (stale allow)"
	}
	return fmt.Sprintf("churnVerdict(%d)", int(v))
}

// judgeDeniedProbe judges a probe from a denied pod that started at
// probeStart, given when the server's node removed the pod's address, which
// an allowed pod held before, from its peer sets.
func judgeDeniedProbe(removedAt, probeStart time.Time, reachable bool) churnVerdict {
	switch {
	case !reachable:
		return verdictDenied
	case removedAt.Before(probeStart):
		return verdictStaleAllow
	}
	return verdictAllowedBeforeRemoval
}

// programmingBound returns the upper bound of the bucket of the daemon's
// histogram nftwarden_event_programming_duration_seconds{kind="pod"}
// (informer delivery to the end of the kernel batch that carried the
// change) that holds the q-quantile, from a /metrics body (the largest
// duration if it is in the last, unbounded bucket).
func programmingBound(body []byte, q float64) (time.Duration, error) {
	const prefix = `nftwarden_event_programming_duration_seconds_bucket{kind="pod",le="`
	type bucket struct{ le, count float64 }
	var buckets []bucket
	for line := range strings.SplitSeq(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		if !ok {
			return 0, fmt.Errorf("unexpected histogram line %q", line)
		}
		l, err := strconv.ParseFloat(le, 64)
		if err != nil {
			return 0, fmt.Errorf("histogram line %q: %w", line, err)
		}
		c, err := strconv.ParseFloat(strings.TrimSpace(count), 64)
		if err != nil {
			return 0, fmt.Errorf("histogram line %q: %w", line, err)
		}
		buckets = append(buckets, bucket{l, c})
	}
	if len(buckets) == 0 || buckets[len(buckets)-1].count == 0 {
		return 0, errors.New("no pod change in the daemon's programming histogram")
	}
	want := q * buckets[len(buckets)-1].count
	for _, b := range buckets {
		if b.count >= want && !math.IsInf(b.le, 1) {
			return time.Duration(b.le * float64(time.Second)), nil
		}
	}
	return time.Duration(math.MaxInt64), nil
}
