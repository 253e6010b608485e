package daemon

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// notifier sends sd_notify(3) messages to systemd over the datagram socket named
// by NOTIFY_SOCKET. A notifier without a socket (not started by systemd, or
// Type= is not notify) does nothing, so the daemon needs no separate mode.
type notifier struct {
	addr string // socket path; a leading '@' means the abstract namespace
}

// notifierFromEnv returns a notifier for $NOTIFY_SOCKET (disabled when unset).
func notifierFromEnv() *notifier {
	return &notifier{addr: os.Getenv("NOTIFY_SOCKET")}
}

// enabled reports whether messages go anywhere.
func (n *notifier) enabled() bool { return n != nil && n.addr != "" }

// notify sends one message such as "READY=1" or "STATUS=...". Several
// assignments may be joined with newlines.
func (n *notifier) notify(state string) error {
	if !n.enabled() {
		return nil
	}
	name := n.addr
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: connect to %s: %w", n.addr, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: send to %s: %w", n.addr, err)
	}
	return nil
}

// watchdogInterval returns how often to send WATCHDOG=1: half of WATCHDOG_USEC,
// as sd_watchdog_enabled(3) recommends. ok is false when systemd expects no
// pings (unset, or meant for another process per WATCHDOG_PID).
func watchdogInterval() (interval time.Duration, ok bool, err error) {
	usec := os.Getenv("WATCHDOG_USEC")
	if usec == "" {
		return 0, false, nil
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || n == 0 {
		return 0, false, fmt.Errorf("invalid WATCHDOG_USEC %q", usec)
	}
	return time.Duration(n) * time.Microsecond / 2, true, nil
}
