package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/nftwarden/nftwarden/integration/internal/agentwire"
)

// agent is a running podagent (integration/cmd/podagent) in a pod namespace, driven
// over its stdin and stdout with one JSON object per line.
type agent struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	logPath string
	unreg   func()

	mu      sync.Mutex
	nextID  int64
	waiting map[int64]chan agentResponse
	// sessions receive the events of the agent's open sessions, by session ID.
	sessions map[int64]func(agentResponse)
	done     chan struct{}
	readErr  error
}

// agentRequest and agentResponse are the podagent's protocol (package agentwire).
type (
	agentRequest  = agentwire.Request
	agentResponse = agentwire.Response
)

// startAgent runs the podagent binary inside namespace ns and waits for it to report
// that its listeners are bound.
func startAgent(binary, ns, name, logPath string, tcp, udp, sctp []string) (*agent, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("agent log: %w", err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, binary, "-name", name,
		"-tcp", join(tcp), "-udp", join(udp), "-sctp", join(sctp))
	cmd.Stderr = logf
	cmd.SysProcAttr = childAttrs()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("agent stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("agent stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start podagent in %s: %w", ns, err)
	}
	a := &agent{cmd: cmd, stdin: stdin, logPath: logPath, waiting: map[int64]chan agentResponse{},
		sessions: map[int64]func(agentResponse){}, done: make(chan struct{})}
	a.unreg = defaultJanitor.register(a.kill)
	ready := make(chan struct{})
	go a.read(stdout, ready, logf)
	select {
	case <-ready:
		return a, nil
	case <-a.done:
		a.stop()
		return nil, fmt.Errorf("podagent in %s ended before it was ready (%v): %s", ns, a.readErr, tailFile(logPath, 10))
	case <-time.After(10 * time.Second):
		a.stop()
		return nil, fmt.Errorf("podagent in %s not ready after 10 s: %s", ns, tailFile(logPath, 10))
	}
}

func join(ports []string) string {
	s := ""
	for i, p := range ports {
		if i > 0 {
			s += ","
		}
		s += p
	}
	return s
}

func (a *agent) read(stdout io.Reader, ready chan struct{}, logf *os.File) {
	defer logf.Close()
	sc := bufio.NewScanner(stdout)
	readySent := false
	for sc.Scan() {
		var r agentResponse
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			fmt.Fprintf(logf, "harness: bad line from agent: %q\n", sc.Text())
			continue
		}
		if r.Ready {
			if !readySent {
				close(ready)
				readySent = true
			}
			continue
		}
		if r.Session != 0 {
			a.mu.Lock()
			event := a.sessions[r.Session]
			a.mu.Unlock()
			if event != nil {
				event(r)
			}
			continue
		}
		a.mu.Lock()
		ch := a.waiting[r.ID]
		delete(a.waiting, r.ID)
		a.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
	a.mu.Lock()
	a.readErr = sc.Err()
	if a.readErr == nil {
		a.readErr = errors.New("agent closed its output")
	}
	a.mu.Unlock()
	close(a.done)
}

// probe asks the agent to connect to addr:port over proto ("tcp", "udp", "sctp").
func (a *agent) probe(ctx context.Context, addr string, port uint16, proto string, timeout time.Duration) (agentResponse, error) {
	return a.call(ctx, agentRequest{ID: a.newID(), Addr: addr, Port: port, Proto: proto, TimeoutMS: int(timeout / time.Millisecond)}, timeout)
}

// newID returns an ID for a request.
func (a *agent) newID() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.nextID++
	return a.nextID
}

// onSession routes the events of session id to f (nil: forget the session).
func (a *agent) onSession(id int64, f func(agentResponse)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f == nil {
		delete(a.sessions, id)
		return
	}
	a.sessions[id] = f
}

// call sends req (its ID from newID) and waits for the answer. The agent bounds the
// request itself by timeout; the margin covers a slow machine.
func (a *agent) call(ctx context.Context, req agentRequest, timeout time.Duration) (agentResponse, error) {
	ch := make(chan agentResponse, 1)
	a.mu.Lock()
	a.waiting[req.ID] = ch
	b, err := json.Marshal(req)
	if err == nil {
		_, err = a.stdin.Write(append(b, '\n'))
	}
	if err != nil {
		delete(a.waiting, req.ID)
		a.mu.Unlock()
		return agentResponse{}, fmt.Errorf("send request to agent: %w", err)
	}
	a.mu.Unlock()
	defer func() { // an answer that never came must not stay expected
		a.mu.Lock()
		delete(a.waiting, req.ID)
		a.mu.Unlock()
	}()
	select {
	case r := <-ch:
		return r, nil
	case <-a.done:
		return agentResponse{}, fmt.Errorf("agent ended: %v; log: %s", a.readErr, tailFile(a.logPath, 10))
	case <-ctx.Done():
		return agentResponse{}, ctx.Err()
	case <-time.After(timeout + 5*time.Second):
		return agentResponse{}, errors.New("agent did not answer in time")
	}
}

// stop closes stdin (the agent's signal to end) and kills it if it lingers.
func (a *agent) stop() {
	a.unreg()
}

func (a *agent) kill() {
	a.stdin.Close()
	waited := make(chan struct{})
	go func() {
		_ = a.cmd.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		return
	case <-time.After(2 * time.Second):
	}
	_ = a.cmd.Process.Kill()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
	}
}
