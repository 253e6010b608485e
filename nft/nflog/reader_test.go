package nflog

import (
	"context"
	"errors"
	"testing"
	"time"

	gonflog "github.com/florianl/go-nflog/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func TestGoNflogConfig(t *testing.T) {
	tests := []struct {
		name        string
		cfg         Config
		wantTimeout uint32
	}{
		{"defaults", Config{}, 5},
		{"10 ms", Config{FlushTimeout: 10 * time.Millisecond}, 1},
		{"below the unit rounds up, never to the kernel's 1 s default", Config{FlushTimeout: time.Millisecond}, 1},
		{"between units rounds up", Config{FlushTimeout: 15 * time.Millisecond}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Group, cfg.NetNS = 7, 3
			got := cfg.withDefaults().goNflogConfig()
			want := gonflog.Config{Group: 7, NetNS: 3, Copymode: gonflog.CopyPacket, Bufsize: DefaultCopyRange,
				QThresh: DefaultQueueThreshold, Timeout: tt.wantTimeout, Flags: gonflog.FlagSeq}
			if *got != want {
				t.Errorf("go-nflog config %+v, want %+v", *got, want)
			}
		})
	}
}

// testReader is a Reader without a socket, for the hooks go-nflog calls.
func testReader(queue int) *Reader {
	ctx, cancel := context.WithCancel(context.Background())
	return &Reader{events: make(chan Event, queue), ctx: ctx, cancel: cancel,
		started: make(chan struct{}), failed: make(chan error, 1)}
}

func TestReadFailed(t *testing.T) {
	fails := errors.New("socket gone")
	tests := []struct {
		name         string
		err          error
		stopped      bool // the reader's context has ended
		wantResult   int
		wantOverruns uint64
		wantFailed   error
	}{
		{name: "ENOBUFS is counted and the reading goes on", err: &netlink.OpError{Op: "receive", Err: unix.ENOBUFS}, wantResult: 0, wantOverruns: 1},
		{name: "another error stops the reading and fails Run", err: fails, wantResult: 1, wantFailed: fails},
		{name: "the deadline that stops go-nflog is no failure", err: &netlink.OpError{Op: "receive", Err: unix.EAGAIN}, stopped: true, wantResult: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testReader(1)
			if tt.stopped {
				r.cancel()
			}
			if got := r.readFailed(tt.err); got != tt.wantResult {
				t.Errorf("result %d, want %d", got, tt.wantResult)
			}
			if got := r.Stats().Overruns; got != tt.wantOverruns {
				t.Errorf("overruns %d, want %d", got, tt.wantOverruns)
			}
			var failed error
			select {
			case failed = <-r.failed:
			default:
			}
			if failed != tt.wantFailed {
				t.Errorf("failure %v, want %v", failed, tt.wantFailed)
			}
		})
	}
}

// deliver holds packets until Run, queues them while it runs and stops
// go-nflog's goroutine once the reader is stopped or Events is closed.
func TestDeliver(t *testing.T) {
	packet := attribute("p", 0, time.Time{}, ipv4Packet(ProtocolUDP, 0, 0, ports(1, 2)))
	tests := []struct {
		name         string
		prepare      func(r *Reader)
		wantResult   int
		wantReceived uint64
	}{
		{name: "running", prepare: func(r *Reader) { close(r.started) }, wantResult: 0, wantReceived: 1},
		{name: "closed before Run", prepare: func(r *Reader) { r.cancel() }, wantResult: 1},
		{name: "after Run", prepare: func(r *Reader) { close(r.started); r.closeEvents() }, wantResult: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testReader(1)
			tt.prepare(r)
			if got := r.deliver(packet); got != tt.wantResult {
				t.Errorf("result %d, want %d", got, tt.wantResult)
			}
			if got := r.Stats().Received; got != tt.wantReceived {
				t.Errorf("received %d, want %d", got, tt.wantReceived)
			}
		})
	}
}

// Run returns the error that stopped go-nflog's goroutine and closes Events.
func TestRunFails(t *testing.T) {
	r := testReader(1)
	fails := errors.New("socket gone")
	r.failed <- fails
	if err := r.Run(context.Background()); !errors.Is(err, fails) {
		t.Errorf("run: %v, want %v", err, fails)
	}
	if _, open := <-r.Events(); open {
		t.Error("events still open after Run")
	}
}
