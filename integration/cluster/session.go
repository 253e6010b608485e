package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/integration/internal/agentwire"
)

// SessionInterval is the time between two exchanges of a Session.
const SessionInterval = 100 * time.Millisecond

// Session is a long-lived flow between two pods, kept by the agent of the client pod:
// one TCP connection, or one UDP socket (the same 5-tuple for every datagram), on which
// a small request and its answer are exchanged every SessionInterval. It shows whether
// an established flow survives what a test does (daemon restarts) or is cut (a
// revocation).
//
// An exchange fails when its answer does not come within the Env's ProbeTimeout (1 s by
// default). Over TCP the kernel retransmits meanwhile; over UDP the agent resends the
// request every 250 ms within that budget, so a single lost datagram is not a failure.
// An answer from another pod than To fails too. The first failure ends the session
// (Broken); it also ends with its client pod.
type Session struct {
	From, To *Pod
	Flow     Flow

	agent *agent
	id    int64

	mu        sync.Mutex
	exchanges int
	brokenAt  time.Time
	err       error
	closed    bool
}

// sessionOpenTimeout bounds the opening of a session in the agent: its connection and
// first exchange (integration/cmd/podagent allows 5 s, for neighbour resolution).
const sessionOpenTimeout = 5 * time.Second

// OpenSession opens a session from one pod to another over f (TCP or UDP) and returns
// once its first exchange succeeded (within 5 s). Close it when done.
func (e *Env) OpenSession(ctx context.Context, from, to *Pod, f Flow) (*Session, error) {
	if from.agent == nil {
		return nil, fmt.Errorf("session from %s: %w", from, errNoAgent)
	}
	if p := f.proto(); p != corev1.ProtocolTCP && p != corev1.ProtocolUDP {
		return nil, fmt.Errorf("session %s -> %s: %s: sessions are TCP or UDP", from, to, f)
	}
	s := &Session{From: from, To: to, Flow: f, agent: from.agent, id: from.agent.newID()}
	s.agent.onSession(s.id, s.event)
	r, err := s.agent.call(ctx, agentRequest{
		ID: s.id, Op: agentwire.OpOpen, Addr: to.Addr(f.family()).String(), Port: f.Port,
		Proto: strings.ToLower(string(f.proto())), TimeoutMS: int(e.opts.ProbeTimeout / time.Millisecond),
		IntervalMS: int(SessionInterval / time.Millisecond),
	}, sessionOpenTimeout)
	switch {
	case err != nil:
		err = fmt.Errorf("open session %s -> %s (%s): %w", from, to, f, err)
	case !r.OK:
		err = fmt.Errorf("open session %s -> %s (%s): %s", from, to, f, r.Error)
	case r.Peer != to.String():
		err = fmt.Errorf("open session %s -> %s (%s): answered by %q", from, to, f, r.Peer)
		_ = s.Close()
		return nil, err
	}
	if err != nil {
		s.agent.onSession(s.id, nil)
		return nil, err
	}
	return s, nil
}

func (s *Session) event(r agentResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exchanges = r.Exchanges
	if r.BrokenNS != 0 && s.brokenAt.IsZero() {
		s.brokenAt = time.Unix(0, r.BrokenNS)
		s.err = errors.New(r.Error)
	}
}

// Exchanges is how many exchanges have succeeded so far.
func (s *Session) Exchanges() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exchanges
}

// Broken reports whether an exchange failed, and when that exchange started.
func (s *Session) Broken() (bool, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.brokenAt.IsZero(), s.brokenAt
}

// Err says why the session broke (nil while it has not).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// String describes the session and its state, for test messages.
func (s *Session) String() string {
	state := "alive"
	if broken, at := s.Broken(); broken {
		state = fmt.Sprintf("broken at %s: %v", at.Format("15:04:05.000"), s.Err())
	}
	return fmt.Sprintf("session %s -> %s (%s), %d exchanges, %s", s.From, s.To, s.Flow, s.Exchanges(), state)
}

// Close ends the session; its counts stay readable. Closing twice, or after the client
// pod is gone, does nothing.
func (s *Session) Close() error {
	s.mu.Lock()
	closed := s.closed
	s.closed = true
	s.mu.Unlock()
	if closed {
		return nil
	}
	defer s.agent.onSession(s.id, nil)
	select {
	case <-s.agent.done:
		return nil
	default:
	}
	r, err := s.agent.call(context.Background(), agentRequest{ID: s.agent.newID(), Op: agentwire.OpClose, Session: s.id}, 5*time.Second)
	if err != nil {
		return fmt.Errorf("close %s: %w", s, err)
	}
	if !r.OK {
		return fmt.Errorf("close %s: %s", s, r.Error)
	}
	return nil
}
