package cluster

import (
	"fmt"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
)

// janitor keeps the cleanup functions of everything created by this process, so that
// an interrupted run (SIGINT, SIGTERM) can still remove its namespaces and processes:
// t.Cleanup does not run when the test binary is killed by a signal.
type janitor struct {
	// runMu makes a second runAll (the signal handler and the end of TestMain can race)
	// wait until the first has finished, so that nobody exits while cleanup runs.
	runMu sync.Mutex
	mu    sync.Mutex
	next  int
	funcs map[int]func()
}

var defaultJanitor = &janitor{funcs: map[int]func(){}}

// register adds f and returns a function that runs f at most once and forgets it.
func (j *janitor) register(f func()) (run func()) {
	j.mu.Lock()
	id := j.next
	j.next++
	j.funcs[id] = f
	j.mu.Unlock()
	return func() {
		j.mu.Lock()
		g, ok := j.funcs[id]
		delete(j.funcs, id)
		j.mu.Unlock()
		if ok {
			g()
		}
	}
}

// runAll runs every registered function, newest first (children before parents).
func (j *janitor) runAll() {
	j.runMu.Lock()
	defer j.runMu.Unlock()
	j.mu.Lock()
	ids := make([]int, 0, len(j.funcs))
	for id := range j.funcs {
		ids = append(ids, id)
	}
	j.mu.Unlock()
	sort.Sort(sort.Reverse(sort.IntSlice(ids)))
	for _, id := range ids {
		j.mu.Lock()
		f, ok := j.funcs[id]
		delete(j.funcs, id)
		j.mu.Unlock()
		if ok {
			f()
		}
	}
}

// CleanupAll removes everything still alive that this process created (namespaces,
// processes, control planes). Safe to call more than once.
func CleanupAll() { defaultJanitor.runAll() }

// Main runs a command's body the way every main of this module does: SIGINT and
// SIGTERM clean up and exit (HandleSignals), everything the body created is
// removed when it returns (also after an error), and an error is printed as
// "<name> failed: ..." with exit status 1.
func Main(name string, body func() error) {
	stop := HandleSignals()
	err := body()
	CleanupAll()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+" failed:", err)
		os.Exit(1)
	}
}

// HandleSignals makes SIGINT and SIGTERM remove everything this process created and
// then exit with status 130 (the conventional status for an interrupted program). It is
// meant for TestMain and for main functions; the returned function stops the handling.
func HandleSignals() (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	// A closed stdout (demo | head) must not kill the process before it cleans up:
	// with SIGPIPE notified, writes fail with EPIPE instead.
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
			CleanupAll()
			os.Exit(130)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(ch)
		signal.Stop(pipe)
		close(done)
	}
}
