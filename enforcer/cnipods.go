package enforcer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
)

// The synchronous pod API: a CNI plugin (or an agent that embeds the engine)
// says "pod ns/name is coming up with these addresses, program it now" before
// the pod's status, which the kubelet writes after the sandbox is up, can tell
// the engine its addresses. Without it every new pod talks freely until its
// status arrives (doc.go, "The CNI path").

// ErrNotSynced: StartPod or StopPod was called before the engine's first
// successful Flush or Reconcile (a reconcile of a model the caller has not
// filled yet would empty the table).
var ErrNotSynced = errors.New("enforcer: the engine has not programmed its first full state yet")

// podSync is what the engine keeps of a local pod for the synchronous API:
// when it last changed, and what StartPod and StopPod said of its addresses.
// Only local pods have one: a node holds every pod of the cluster, and the
// bytes per pod are what the engine's memory is made of.
type podSync struct {
	// changed is the engine's change number (Engine.changes) of the pod's
	// latest change.
	changed uint64
	// announced are the addresses StartPod gave (sorted), the pod's while
	// its upserts carry none.
	announced []netip.Addr
	// released are the addresses StopPod took away, left out of upserts
	// that still list them (the pod object outlives its sandbox); known are
	// those and the other addresses the pod had then: an upsert with an
	// address outside known comes from a new sandbox and ends the release.
	released, known []netip.Addr
}

// addresses returns the addresses the model keeps for a pod whose upsert
// lists ips: the announced ones while it lists none, without the released
// ones. An upsert with addresses ends the announcement (the API wins; a
// mismatch is logged, once since the announcement ends here), one with a new
// address ends the release.
func (s *podSync) addresses(id string, ips []netip.Addr, log *slog.Logger) []netip.Addr {
	switch {
	case len(ips) == 0:
		ips = s.announced
	case s.announced != nil:
		if !slices.Equal(ips, s.announced) {
			log.Warn("the pod's status lists other addresses than its CNI announced; the status wins",
				"pod", id, "announced", s.announced, "status", ips)
		}
		s.announced = nil
	}
	if len(s.released) == 0 {
		return ips
	}
	if slices.ContainsFunc(ips, func(a netip.Addr) bool { return !slices.Contains(s.known, a) }) {
		s.released, s.known = nil, nil
		return ips
	}
	return without(ips, s.released)
}

// release takes those of addrs that are among the pod's current addresses
// away from it, until a new sandbox or StartPod.
func (s *podSync) release(addrs, current []netip.Addr) {
	for _, a := range addrs {
		if slices.Contains(current, a) && !slices.Contains(s.released, a) {
			s.released = append(s.released, a)
		}
	}
	if len(s.released) == 0 {
		return
	}
	for _, a := range current {
		if !slices.Contains(s.known, a) {
			s.known = append(s.known, a)
		}
	}
	s.announced = without(s.announced, s.released)
}

// without returns ips without the addresses of drop, in order (nil when none
// is left; ips itself when nothing is dropped).
func without(ips, drop []netip.Addr) []netip.Addr {
	if !slices.ContainsFunc(ips, func(a netip.Addr) bool { return slices.Contains(drop, a) }) {
		return ips
	}
	var out []netip.Addr
	for _, a := range ips {
		if !slices.Contains(drop, a) {
			out = append(out, a)
		}
	}
	return out
}

// StartPod: pod p (labels, node, ports from the API object; parsed with
// NewPod) is coming up with addrs (from the CNI result). It records addrs as
// the pod's addresses until the pod's status lists its own, then flushes, and
// returns when a successful kernel batch has carried the pod (FlushResult of
// that flush). Errors: p not local (its node is not Config.NodeName),
// hostNetwork, finished, no or invalid addrs, ErrNotSynced, the flush's
// error. If p's status already has IPs that differ from addrs: logged
// (warning), the status wins.
//
// StartPod also ends a release by StopPod (the pod has a new sandbox). The
// batch that carries the pod may be another caller's: concurrent StartPods
// share one. ctx bounds the wait for the batch as well as the batch.
func (e *Engine) StartPod(ctx context.Context, p *Pod, addrs []netip.Addr) (FlushResult, error) {
	if e.cfg.Dataplane == nil {
		return FlushResult{}, fmt.Errorf("enforcer: start pod: %w", ErrNoDataplane)
	}
	if err := checkParsedPod(p); err != nil {
		return FlushResult{}, fmt.Errorf("enforcer: start pod: %w", err)
	}
	rec := &p.rec
	switch {
	case !e.isLocal(rec):
		return FlushResult{}, fmt.Errorf("enforcer: start pod %s: its node is %q, not this node (%q)", rec.ID, rec.Node.Value(), e.cfg.NodeName)
	case rec.HostNetwork:
		return FlushResult{}, fmt.Errorf("enforcer: start pod %s: a hostNetwork pod has no addresses of its own", rec.ID)
	case rec.Finished:
		return FlushResult{}, fmt.Errorf("enforcer: start pod %s: the pod has finished", rec.ID)
	}
	ips, err := podAddrs(addrs)
	if err != nil {
		return FlushResult{}, fmt.Errorf("enforcer: start pod %s: %w", rec.ID, err)
	}
	if len(ips) == 0 {
		return FlushResult{}, fmt.Errorf("enforcer: start pod %s: no addresses", rec.ID)
	}
	perr := p.Err()
	e.mu.Lock()
	if !e.synced {
		e.mu.Unlock()
		return FlushResult{}, fmt.Errorf("enforcer: start pod %s: %w", rec.ID, ErrNotSynced)
	}
	s := e.podSyncOf(rec.ID)
	s.announced, s.released, s.known = ips, nil, nil
	e.upsertPod(rec, perr)
	want := s.changed
	e.dropIdlePodSync(rec.ID)
	e.mu.Unlock()
	res, err := e.flushUpTo(ctx, want)
	if err != nil {
		return res, fmt.Errorf("enforcer: start pod %s: %w", rec.ID, err)
	}
	return res, nil
}

// StopPod: the pod's sandbox is gone (CNI DEL): addrs (all the pod's
// addresses when empty) leave the dataplane now, although the pod object may
// still list them, then flushes. Idempotent: an unknown pod or address is not
// an error (returns after a flush anyway).
//
// It returns when a successful kernel batch has carried every change of a
// local pod made before it (a DeletePod of this pod included); the batch may
// be another caller's. Only a pod of this node is released.
func (e *Engine) StopPod(ctx context.Context, namespace, name string, addrs []netip.Addr) (FlushResult, error) {
	id := namespace + "/" + name
	if e.cfg.Dataplane == nil {
		return FlushResult{}, fmt.Errorf("enforcer: stop pod %s: %w", id, ErrNoDataplane)
	}
	ips, err := podAddrs(addrs)
	if err != nil {
		return FlushResult{}, fmt.Errorf("enforcer: stop pod %s: %w", id, err)
	}
	e.mu.Lock()
	if !e.synced {
		e.mu.Unlock()
		return FlushResult{}, fmt.Errorf("enforcer: stop pod %s: %w", id, ErrNotSynced)
	}
	if rec := e.m.pod(id); e.isLocal(rec) {
		if len(ips) == 0 {
			ips = rec.IPs
		}
		s := e.podSyncOf(id)
		s.release(ips, rec.IPs)
		if kept := without(rec.IPs, s.released); len(kept) != len(rec.IPs) {
			cp := *rec
			cp.IPs = kept
			e.storePod(rec, &cp)
		}
	}
	want := e.changes
	e.mu.Unlock()
	res, err := e.flushUpTo(ctx, want)
	if err != nil {
		return res, fmt.Errorf("enforcer: stop pod %s: %w", id, err)
	}
	return res, nil
}

// PodProgrammed (CNI CHECK): nil if the pod is in the model with every
// address of addrs and the last successful flush carried its latest change;
// otherwise an error that says what is missing.
//
// Only a pod of this node that takes part in policy (not hostNetwork, not
// finished, with an address) is programmed; with no addrs, its addresses
// are checked, whichever they are.
func (e *Engine) PodProgrammed(namespace, name string, addrs []netip.Addr) error {
	id := namespace + "/" + name
	ips, err := podAddrs(addrs)
	if err != nil {
		return fmt.Errorf("enforcer: pod %s: %w", id, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.synced {
		return fmt.Errorf("enforcer: pod %s: %w", id, ErrNotSynced)
	}
	rec := e.m.pod(id)
	switch {
	case rec == nil:
		return fmt.Errorf("enforcer: pod %s is not in the model", id)
	case !e.isLocal(rec):
		return fmt.Errorf("enforcer: pod %s is on node %q, not this node (%q)", id, rec.Node.Value(), e.cfg.NodeName)
	case rec.HostNetwork:
		return fmt.Errorf("enforcer: pod %s is a hostNetwork pod", id)
	case rec.Finished:
		return fmt.Errorf("enforcer: pod %s has finished", id)
	case len(rec.IPs) == 0:
		return fmt.Errorf("enforcer: pod %s has no address (neither announced nor in its status, or released)", id)
	}
	var missing []string
	for _, a := range ips {
		if !slices.Contains(rec.IPs, a) {
			missing = append(missing, a.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("enforcer: pod %s does not have address %s (it has %v)", id, strings.Join(missing, ", "), rec.IPs)
	}
	if s := e.podSyncs[id]; s != nil && s.changed > e.flushedChanges {
		return fmt.Errorf("enforcer: pod %s: its latest change (%d) is not programmed yet (the last successful flush carried changes up to %d)",
			id, s.changed, e.flushedChanges)
	}
	return nil
}

// podAddrs checks and normalises addresses given for a pod: unmapped,
// deduplicated, sorted as NewPod sorts a pod's IPs. An address no pod can
// have (invalid, zoned, unspecified, loopback, multicast) is an error.
func podAddrs(addrs []netip.Addr) ([]netip.Addr, error) {
	if len(addrs) == 0 {
		return nil, nil
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsValid() || a.Zone() != "" || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() {
			return nil, fmt.Errorf("%q is not a pod address", a)
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out, nil
}

// isLocal reports whether rec is a pod of this node.
func (e *Engine) isLocal(rec *podRecord) bool {
	return rec != nil && e.cfg.NodeName != "" && rec.Node.Value() == e.cfg.NodeName
}

// podSyncOf returns the bookkeeping of local pod id, made if it has none
// (the caller holds mu; dropIdlePodSync drops one its change did not need).
func (e *Engine) podSyncOf(id string) *podSync {
	s := e.podSyncs[id]
	if s == nil {
		if e.podSyncs == nil {
			e.podSyncs = map[string]*podSync{}
		}
		s = &podSync{}
		e.podSyncs[id] = s
	}
	return s
}

// dropIdlePodSync drops the bookkeeping of pod id if the pod is not a local
// pod in the model (StartPod made it for a pod it did not store).
func (e *Engine) dropIdlePodSync(id string) {
	if !e.isLocal(e.m.pod(id)) {
		delete(e.podSyncs, id)
	}
}

// storedPod returns the record the model keeps for pod raw as its caller
// upserts it: raw itself, or a copy with the addresses StartPod announced or
// without those StopPod released (local pods only). The caller holds mu.
func (e *Engine) storedPod(raw *podRecord) *podRecord {
	s := e.podSyncs[raw.ID]
	if s == nil || !e.isLocal(raw) {
		return raw
	}
	ips := s.addresses(raw.ID, raw.IPs, e.log)
	if slices.Equal(ips, raw.IPs) {
		return raw
	}
	cp := *raw
	cp.IPs = ips
	return &cp
}

// podStored numbers a change of pod old into cur (nil: deleted) when either
// is local, so that StartPod and PodProgrammed can tell whether the kernel
// holds it; a pod that is no longer local loses its bookkeeping. The caller
// holds mu.
func (e *Engine) podStored(old, cur *podRecord) {
	if !e.isLocal(old) && !e.isLocal(cur) {
		return
	}
	e.changes++
	if !e.isLocal(cur) {
		delete(e.podSyncs, old.ID)
		return
	}
	e.podSyncOf(cur.ID).changed = e.changes
}

// flushUpTo returns when a successful Flush or Reconcile has carried change
// number want: at once if one has, else after the batch it runs itself or
// waits for (whichever comes first: concurrent callers share a batch). ctx
// bounds the wait as well as the batch.
func (e *Engine) flushUpTo(ctx context.Context, want uint64) (FlushResult, error) {
	for {
		e.mu.Lock()
		if e.flushedChanges >= want {
			res := e.lastFlush
			e.mu.Unlock()
			return res, nil
		}
		// Taken before trying applyMu: if the holder lets it go after the
		// try, it closes this channel.
		if e.applyFreed == nil {
			e.applyFreed = make(chan struct{})
		}
		freed := e.applyFreed
		e.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return FlushResult{}, fmt.Errorf("waiting for the kernel batch: %w", err)
		}
		if e.applyMu.TryLock() {
			res, err := e.sync(ctx)
			e.unlockApply()
			return res, err
		}
		select {
		case <-ctx.Done():
			return FlushResult{}, fmt.Errorf("waiting for the kernel batch: %w", ctx.Err())
		case <-freed:
		}
	}
}
