package cluster

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses: 198.18.7.1 and 198.18.7.2 as set elements, in a namespace of the
// test's own; nothing is routed.

func TestNFTBatchCarries(t *testing.T) {
	addr := []byte{198, 18, 7, 1}
	batch := NFTBatch{Messages: []NFTMessage{
		{Type: unix.NFT_MSG_NEWSETELEM, Attrs: append([]byte("set-a\x00"), addr...)},
		{Type: unix.NFT_MSG_DELRULE, Attrs: []byte("pol-in-ns/gone\x00")},
		{Type: unix.NFT_MSG_DELRULE, Attrs: []byte("jump pol-in-ns/kept\x00")},
		{Type: unix.NFT_MSG_NEWRULE, Attrs: []byte("jump pol-in-ns/kept\x00")},
	}}
	for _, tc := range []struct {
		name   string
		change NFTChange
		want   bool
	}{
		{"element added", NFTChange{Elements: true, Op: NFTAdd, Needle: addr}, true},
		{"element, any op", NFTChange{Elements: true, Needle: addr}, true},
		{"element deleted: none", NFTChange{Elements: true, Op: NFTDelete, Needle: addr}, false},
		{"other element", NFTChange{Elements: true, Needle: []byte{198, 18, 7, 2}}, false},
		{"address in a rule: none", NFTChange{Op: NFTAny, Needle: addr}, false},
		{"chain of a deleted rule", NFTChange{Op: NFTDelete, Needle: []byte("ns/gone\x00")}, true},
		{"chain name is whole", NFTChange{Op: NFTDelete, Needle: []byte("ns/gon\x00")}, false},
		{"rule added: none", NFTChange{Op: NFTAdd, Needle: []byte("ns/gone\x00")}, false},
		{"rule of a rewritten chain: neither added nor deleted", NFTChange{Op: NFTDelete, Needle: []byte("ns/kept\x00")}, false},
		{"rule of a rewritten chain: changed", NFTChange{Needle: []byte("ns/kept\x00")}, true},
	} {
		if got := batch.Carries(tc.change); got != tc.want {
			t.Errorf("%s: Carries = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestNFTBatchWatchKernel commits batches with nft(8) in a namespace of its
// own: the watch reports those that touched its table, each once, with
// their element messages, and none of another table.
func TestNFTBatchWatchKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft(8) not installed")
	}
	ns := namePrefix() + "batchwatch"
	rm, err := createNetns(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rm)
	nft := func(script string) {
		t.Helper()
		cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft %q: %v: %s", script, err, out)
		}
	}
	w, err := WatchNFTBatches(ns, "watched")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	a1, a2 := NFTChange{Elements: true, Needle: []byte{198, 18, 7, 1}}, NFTChange{Elements: true, Needle: []byte{198, 18, 7, 2}}
	steps := []struct {
		script      string
		carries     []NFTChange
		notCarries  []NFTChange
		minMessages int
	}{
		{"add table inet watched\nadd set inet watched s { type ipv4_addr; }\nadd element inet watched s { 198.18.7.1 }\n",
			[]NFTChange{{Elements: true, Op: NFTAdd, Needle: a1.Needle}}, []NFTChange{a2}, 3},
		{"add table inet other\nadd set inet other s { type ipv4_addr; }\nadd element inet other s { 198.18.7.2 }\n" +
			"add element inet watched s { 198.18.7.2 }\ndelete element inet watched s { 198.18.7.1 }\n",
			[]NFTChange{{Elements: true, Op: NFTAdd, Needle: a2.Needle}, {Elements: true, Op: NFTDelete, Needle: a1.Needle}}, nil, 2},
	}
	start := time.Now()
	for i, step := range steps {
		nft(step.script)
		b, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if b.End.Before(start) || b.Process != "nft" || len(b.Messages) < step.minMessages {
			t.Errorf("step %d: batch ended %v (start %v) by %q with %d messages; want after the start, by nft, at least %d",
				i, b.End, start, b.Process, len(b.Messages), step.minMessages)
		}
		for _, c := range step.carries {
			if !b.Carries(c) {
				t.Errorf("step %d: batch does not carry %+v", i, c)
			}
		}
		for _, c := range step.notCarries {
			if b.Carries(c) {
				t.Errorf("step %d: batch carries %+v", i, c)
			}
		}
		for _, m := range b.Messages {
			if strings.Contains(string(m.Attrs), "other") {
				t.Errorf("step %d: message %d of table other reported", i, m.Type)
			}
		}
	}
	// A batch of the other table alone is not reported: the next is ours.
	nft("add element inet other s { 198.18.7.1 }\n")
	nft("delete element inet watched s { 198.18.7.2 }\n")
	b, err := w.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Carries(NFTChange{Elements: true, Op: NFTDelete, Needle: a2.Needle}) || len(b.Messages) != 1 {
		t.Errorf("after a batch of another table: got %d messages, want the deletion of 198.18.7.2 alone", len(b.Messages))
	}
}
