package nft

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// UntouchedMaxAge bounds how long Kernel.Untouched trusts the event stream
// alone: once the last full read (Read or Reconcile) is older, Untouched is
// false until the next one. It is the deep check behind the monitor, for what
// the event stream cannot show: a kernel that lost notifications without
// saying so, or a stranger's socket that reuses the port ID of one this
// Kernel closed.
const UntouchedMaxAge = 5 * time.Minute

// Untouched implements TamperEvident. It reports whether the table holds
// exactly what this Kernel last read from it or wrote to it since, which is
// the case when all of these hold:
//
//   - a WatchChanges has been running, subscribed, since before the last full
//     read (Read or Reconcile) started, and has lost no event since (nor
//     found that others committed while it was unsubscribed for a large
//     batch of this Kernel, see mute.go);
//   - it has seen no foreign change since that read started (a change it
//     processes later, even one committed before the read, marks the table
//     again: a spurious mark only costs one more read);
//   - no batch of this Kernel failed, and no read failed, since then;
//   - that read started less than UntouchedMaxAge ago.
//
// A false answer is always safe: the caller reads the kernel (Reconcile).
func (k *Kernel) Untouched() bool { return k.tamper.untouched() }

var _ TamperEvident = (*Kernel)(nil)

// tamperLog is what a Kernel knows about changes to its table that it did
// not make. The change monitor updates it from its own goroutine while the
// Kernel may hold its mutex for a long batch, so it has its own lock.
type tamperLog struct {
	mu  sync.Mutex
	now func() time.Time // time.Now; tests replace it
	// ports are the port IDs of the batch sockets this Kernel used, oldest
	// first. The monitor may still hold notifications of a socket the
	// Kernel replaced after a failed batch, so the last few are kept. A
	// closed socket's port ID could be handed to another socket, but hardly
	// while it is remembered: the kernel gives a process's first netfilter
	// socket in a namespace its pid (the batch socket is dialed after the
	// listing ones) and the others numbers from a system-wide counter that
	// counts down (net/netlink/af_netlink.c, netlink_autobind).
	ports []uint32
	// monitors are the running monitors (subscribed, or muted for one of
	// this Kernel's batches).
	monitors map[*monitor]bool
	// epoch counts the events that may have changed the table behind the
	// Kernel's back (a foreign batch, lost notifications, a monitor that
	// stopped, a failed batch or read). A full read proves the table clean
	// only if the epoch did not move while it ran.
	epoch uint64
	// clean: the last full read was proven clean and nothing happened since.
	clean  bool
	readAt time.Time // start of that read
}

// maxOwnPorts bounds the remembered batch port IDs: a Kernel replaces its
// batch socket only after a failed batch, and the monitor reads a replaced
// socket's notifications within milliseconds.
const maxOwnPorts = 16

func newTamperLog() *tamperLog { return &tamperLog{now: time.Now} }

// addPort records the port ID of a new batch socket and updates the running
// monitors' socket filters, before any batch is sent on it (so no monitor
// sees one of its notifications first).
func (t *tamperLog) addPort(port uint32) {
	t.mu.Lock()
	// A new slice each time: monitors read the old one without the lock.
	keep := t.ports[max(len(t.ports)-maxOwnPorts+1, 0):]
	t.ports = append(slices.Clip(slices.Clone(keep)), port)
	t.mu.Unlock()
	for _, m := range t.running() {
		_ = m.filter() // on failure the monitor drops them itself
	}
}

// ownPorts returns the remembered port IDs, never modified afterwards.
func (t *tamperLog) ownPorts() []uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ports
}

// currentEpoch returns the count of events that may have changed the table
// behind the Kernel's back.
func (t *tamperLog) currentEpoch() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.epoch
}

// touch records that the table may have changed behind the Kernel's back.
func (t *tamperLog) touch() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.epoch++
	t.clean = false
}

func (t *tamperLog) watchStarted(m *monitor) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.monitors == nil {
		t.monitors = map[*monitor]bool{}
	}
	t.monitors[m] = true
}

// watchStopped: from now on this monitor vouches for nothing.
func (t *tamperLog) watchStopped(m *monitor) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.monitors, m)
	t.epoch++
	t.clean = false
}

// running returns the running monitors.
func (t *tamperLog) running() []*monitor {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Collect(maps.Keys(t.monitors))
}

// readTicket is what a full read remembers from its start.
type readTicket struct {
	at       time.Time
	epoch    uint64
	watching bool
}

// readStarting is called before a full read lists anything.
func (t *tamperLog) readStarting() readTicket {
	t.mu.Lock()
	defer t.mu.Unlock()
	return readTicket{at: t.now(), epoch: t.epoch, watching: len(t.monitors) > 0}
}

// readDone records a successful full read: the table is clean if a monitor
// was running when the read started and nothing was recorded since.
func (t *tamperLog) readDone(r readTicket) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clean = r.watching && t.epoch == r.epoch
	t.readAt = r.at
}

func (t *tamperLog) untouched() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.clean && len(t.monitors) > 0 && t.now().Sub(t.readAt) < UntouchedMaxAge
}
