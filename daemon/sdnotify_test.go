package daemon

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// listenNotify creates a datagram socket like systemd's notify socket and points
// NOTIFY_SOCKET at it. The directory is short: socket paths are limited to 108
// bytes.
func listenNotify(t *testing.T) *net.UnixConn {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

func readNotify(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	conn := listenNotify(t)
	n := notifierFromEnv()
	if !n.enabled() {
		t.Fatal("notifier disabled with NOTIFY_SOCKET set")
	}
	for _, msg := range []string{"READY=1\nSTATUS=enforcing", "WATCHDOG=1", "STOPPING=1"} {
		if err := n.notify(msg); err != nil {
			t.Fatal(err)
		}
		if got := readNotify(t, conn); got != msg {
			t.Errorf("received %q, want %q", got, msg)
		}
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	name := "nftwarden-test-" + strconv.Itoa(os.Getpid())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "\x00" + name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", "@"+name)
	if err := notifierFromEnv().notify("READY=1"); err != nil {
		t.Fatal(err)
	}
	if got := readNotify(t, conn); got != "READY=1" {
		t.Errorf("received %q", got)
	}
}

func TestNotifyDisabled(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := notifierFromEnv()
	if n.enabled() {
		t.Fatal("enabled without NOTIFY_SOCKET")
	}
	if err := n.notify("READY=1"); err != nil {
		t.Errorf("notify without a socket: %v", err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent"))
	if err := notifierFromEnv().notify("READY=1"); err == nil {
		t.Error("notify to a missing socket returned nil")
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		usec, pid string
		want      time.Duration
		ok        bool
		wantErr   bool
	}{
		{usec: "", ok: false},
		{usec: "30000000", want: 15 * time.Second, ok: true},
		{usec: "30000000", pid: pid, want: 15 * time.Second, ok: true},
		{usec: "30000000", pid: "1", ok: false},
		{usec: "soon", wantErr: true},
		{usec: "0", wantErr: true},
	}
	for _, tc := range tests {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		got, ok, err := watchdogInterval()
		if (err != nil) != tc.wantErr || ok != tc.ok || got != tc.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: got %v %v %v, want %v %v error %v",
				tc.usec, tc.pid, got, ok, err, tc.want, tc.ok, tc.wantErr)
		}
	}
}
