package nfttest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// nodeCounters are what a connection-rate node forwarded and what its
// conntrack judged invalid, since the namespace was made: read per batch,
// they tell whether setups do the same work per connection apart from their
// tables (an invalid packet that one program drops and another forwards
// makes more packets behind it).
type nodeCounters struct {
	forwarded uint64 // IP datagrams forwarded (Ip: ForwDatagrams)
	invalid   uint64 // packets conntrack found invalid, all CPUs
}

// readNodeCounters reads ns's counters from a thread inside it
// (/proc/thread-self/net: /proc/net is the thread group leader's).
func readNodeCounters(ns *NetNS) (nodeCounters, error) {
	var c nodeCounters
	err := ns.Run(func() error {
		snmp, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		if c.forwarded, err = snmpField(string(snmp), "Ip:", "ForwDatagrams"); err != nil {
			return err
		}
		stat, err := os.ReadFile("/proc/thread-self/net/stat/nf_conntrack")
		if os.IsNotExist(err) {
			return nil // no conntrack in this kernel
		}
		if err != nil {
			return err
		}
		c.invalid, err = conntrackInvalid(string(stat))
		return err
	})
	if err != nil {
		return c, fmt.Errorf("counters of %s: %w", ns.Name, err)
	}
	return c, nil
}

// snmpField returns the value of field in the two lines of /proc/net/snmp
// that start with prefix (names, then values).
func snmpField(snmp, prefix, field string) (uint64, error) {
	var names []string
	for line := range strings.Lines(snmp) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != prefix {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == field && i < len(f) {
				return strconv.ParseUint(f[i], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s %s in /proc/net/snmp", prefix, field)
}

// conntrackInvalid sums the "invalid" column (hexadecimal, one row per
// CPU) of /proc/net/stat/nf_conntrack.
func conntrackInvalid(stat string) (uint64, error) {
	lines := strings.Split(strings.TrimSpace(stat), "\n")
	col := -1
	for i, n := range strings.Fields(lines[0]) {
		if n == "invalid" {
			col = i
		}
	}
	if col < 0 {
		return 0, fmt.Errorf("no invalid column in /proc/net/stat/nf_conntrack")
	}
	var sum uint64
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if col >= len(f) {
			continue
		}
		v, err := strconv.ParseUint(f[col], 16, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/net/stat/nf_conntrack: %w", err)
		}
		sum += v
	}
	return sum, nil
}

// wakeIPIs is the machine's count of rescheduling and function-call
// interrupts (the RES and CAL rows of /proc/interrupts, all CPUs): one CPU
// waking a thread on, or asking work of, another. In a VM each is an exit
// of the sender and, when the target vCPU was halted, a host wake-up: the
// latency a one-client benchmark pays per connection beside its packets.
// Machine-wide: other processes' wake-ups count too.
func wakeIPIs() (uint64, error) {
	b, err := os.ReadFile("/proc/interrupts")
	if err != nil {
		return 0, err
	}
	var sum uint64
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || (f[0] != "RES:" && f[0] != "CAL:") {
			continue
		}
		for _, v := range f[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				break // the row's description
			}
			sum += n
		}
	}
	return sum, nil
}
