package nfttest

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
)

// PerfWindow opens the recording window of a profiler started as
// `perf record --control fifo:<ctl>,<ack> -D -1` (disabled until told),
// given ctlAck = "<ctl>,<ack>": it enables the events now and Close
// disables them, each acknowledged, so that a profile of the whole machine
// holds what ran in between and not the setup before it. With ctlAck ""
// it does nothing.
func PerfWindow(tb testing.TB, ctlAck string) *PerfControl {
	tb.Helper()
	if ctlAck == "" {
		return &PerfControl{}
	}
	ctlPath, ackPath, ok := strings.Cut(ctlAck, ",")
	if !ok {
		tb.Fatalf("perf control %q: want <ctl fifo>,<ack fifo>", ctlAck)
	}
	ctl, err := os.OpenFile(ctlPath, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatalf("perf control: %v", err)
	}
	ack, err := os.Open(ackPath)
	if err != nil {
		ctl.Close()
		tb.Fatalf("perf control: %v", err)
	}
	p := &PerfControl{tb: tb, ctl: ctl, ack: bufio.NewReader(ack), ackFile: ack}
	p.command("enable")
	return p
}

// PerfControl is an open window of PerfWindow.
type PerfControl struct {
	tb      testing.TB
	ctl     *os.File
	ack     *bufio.Reader
	ackFile *os.File
}

// command sends cmd to perf and waits for its acknowledgement.
func (p *PerfControl) command(cmd string) {
	if _, err := fmt.Fprintln(p.ctl, cmd); err != nil {
		p.tb.Fatalf("perf control %s: %v", cmd, err)
	}
	if line, err := p.ack.ReadString('\n'); err != nil || strings.Trim(line, "\x00\n") != "ack" {
		p.tb.Fatalf("perf control %s: acknowledgement %q, %v", cmd, line, err)
	}
}

// Close disables the events and closes the fifos.
func (p *PerfControl) Close() {
	if p.ctl == nil {
		return
	}
	p.command("disable")
	p.ctl.Close()
	p.ackFile.Close()
	p.ctl = nil
}
