package podwatch

import (
	"sync"
	"time"
)

// Change is one change of an object that a successful Flush or Reconcile
// carried to the dataplane (Hooks.Programmed).
type Change struct {
	Kind Kind
	// Changed is when the API server made the change, in whole seconds (see
	// changetime.go): the newest managed fields time of the object, its
	// creation, its deletion request, a pod's status condition transitions;
	// for an object that is gone, the moment the informer delivered its
	// deletion. Never after Seen.
	Changed time.Time
	// Seen is when the informer delivered the change to the watcher.
	Seen time.Time
}

// maxUnflushedChanges bounds the changes kept for Hooks.Programmed while
// flushes fail or the worker lags: beyond it, further changes are not
// measured (they are applied all the same).
const maxUnflushedChanges = 1 << 16

// changeLog follows each change from the informer's notification to the
// flush that carries it. A change is recorded (pending) before its key is
// queued, taken into the batch whose keys include its key before the batch
// reads the informer cache (so the batch applies it: the cache was updated
// before the notification), and handed to Hooks.Programmed once that
// batch's flush, or the first later one, succeeds.
type changeLog struct {
	mu      sync.Mutex
	pending map[key][]Change
	carried []Change // taken into batches whose flush has not succeeded yet
	n       int      // len(carried) + the pending changes
}

func newChangeLog() *changeLog { return &changeLog{pending: map[key][]Change{}} }

// record notes a change of k (nothing once maxUnflushedChanges are kept).
func (l *changeLog) record(k key, c Change) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n >= maxUnflushedChanges {
		return
	}
	l.pending[k] = append(l.pending[k], c)
	l.n++
}

// take moves the pending changes of the batch's keys to the carried ones.
func (l *changeLog) take(batch []key) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range batch {
		if cs, ok := l.pending[k]; ok {
			l.carried = append(l.carried, cs...)
			delete(l.pending, k)
		}
	}
}

// flushed returns the carried changes, which a flush has now programmed,
// and forgets them.
func (l *changeLog) flushed() []Change {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.carried
	l.carried = nil
	l.n -= len(out)
	return out
}
