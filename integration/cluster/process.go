package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// process is a child process whose output goes to a log file. It is stopped by PID
// (SIGTERM, then SIGKILL after a grace period), never by name.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
	unreg   func()
}

// startProcess starts argv with stdout and stderr appended to logPath.
func startProcess(name, logPath string, argv []string, env []string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = env
	cmd.SysProcAttr = childAttrs()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, argv[0], err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	p.unreg = defaultJanitor.register(func() { p.kill(2 * time.Second) })
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// stop ends the process (SIGTERM, then SIGKILL after grace) and waits for it.
func (p *process) stop(grace time.Duration) {
	p.unreg()
	p.kill(grace)
}

// killNow sends SIGKILL (no chance to clean up, as `kill -9` does) and waits until the
// process has ended.
func (p *process) killNow() error {
	p.unreg()
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s (pid %d): %w", p.name, p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) still runs 10 s after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

func (p *process) kill(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// tail returns the last n lines of the process's log.
func (p *process) tail(n int) string {
	return tailFile(p.logPath, n)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// exitError describes how a process ended, with the end of its log.
func (p *process) exitError() error {
	ok, err := p.exited()
	if !ok {
		return nil
	}
	if err == nil {
		err = errors.New("exited with status 0")
	}
	return fmt.Errorf("%s ended early: %w; last lines of %s:\n%s", p.name, err, p.logPath, p.tail(30))
}

// childAttrs puts a child in its own process group, so that a terminal's SIGINT reaches
// only this process, which then stops its children in order; and has the kernel kill the
// child if this process dies without doing so (SIGKILL, a crash), so that no etcd or
// daemon outlives the run. `ip netns exec` execs its command, which keeps the setting.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
