package nft_test

// Batches against small and capped socket buffers. IP plan: program()
// (kernel_test.go), plus a set "big" of 198.18.0.0 onwards (v4Seq).

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
)

// bigBatch is a transaction of about 2 MB: a set of n elements, plus one
// element in an existing set that must not survive a failure.
func bigBatch(n int) *nft.Transaction {
	var tx nft.Transaction
	tx.AddElements("peer-v4-web", v4("198.18.0.77"))
	tx.AddSet(nft.Set{Name: "big", Key: []nft.KeyType{nft.TypeIPv4Addr}})
	tx.AddElements("big", v4Seq(n)...)
	return &tx
}

// assertUnchanged checks that the table still holds exactly before, then
// that the Kernel still works: a small Apply succeeds.
func assertUnchanged(t *testing.T, k *nft.Kernel, before *nft.State) {
	t.Helper()
	assertConverged(t, k, before)
	var ok nft.Transaction
	ok.AddElements("peer-v4-web", v4("198.18.0.78"))
	if err := k.Apply(context.Background(), &ok); err != nil {
		t.Fatalf("Apply after the failure: %v", err)
	}
	want := before.Clone()
	if err := want.Apply(&ok); err != nil {
		t.Fatal(err)
	}
	assertConverged(t, k, want)
}

// TestKernelSocketBuffers sends a batch of 50,000 elements (about 2 MB, one
// sendmsg) from a Kernel whose socket buffers start at 4 KiB: the Kernel
// grows them and the batch applies whole; when the buffers may not grow that
// far, Apply fails before anything is sent, the table is as before, and the
// Kernel goes on working.
func TestKernelSocketBuffers(t *testing.T) {
	const n = 50_000
	for _, tc := range []struct {
		name    string
		opts    []nft.KernelOption
		wantErr error
	}{
		{"grown from 4 KiB", []nft.KernelOption{nft.WithSocketBuffer(4 << 10)}, nil},
		{"capped at 256 KiB", []nft.KernelOption{nft.WithSocketBuffer(4 << 10), nft.WithBufferLimit(256 << 10)}, nft.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, k := newKernel(t, tc.opts...)
			before := program()
			applyState(t, k, before)
			tx := bigBatch(n)
			err := k.Apply(context.Background(), tx)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Apply: got %v, want %v", err, tc.wantErr)
				}
				t.Logf("error: %v", err)
				assertUnchanged(t, k, before)
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			want := before.Clone()
			if err := want.Apply(tx); err != nil {
				t.Fatal(err)
			}
			waitForCount(t, k, "big", n)
			assertConverged(t, k, want)
		})
	}
}

// TestKernelErrorAnswersOverflow sends a batch of which 5,000 messages fail
// from a Kernel with small socket buffers: the kernel's error answers (one
// per failed message) overflow the receive buffer. Apply fails, nothing of
// the batch is applied, and the Kernel goes on working.
func TestKernelErrorAnswersOverflow(t *testing.T) {
	_, k := newKernel(t, nft.WithSocketBuffer(4<<10))
	before := program()
	applyState(t, k, before)
	var tx nft.Transaction
	tx.AddElements("peer-v4-web", v4("198.18.0.77"))
	for i := range 5_000 {
		tx.DeleteChain(fmt.Sprintf("nope-%d", i))
	}
	err := k.Apply(context.Background(), &tx)
	if err == nil {
		t.Fatal("Apply succeeded")
	}
	t.Logf("error: %v", err)
	var opErr *nft.OpError
	if !errors.As(err, &opErr) || opErr.Index != 1 || !nft.IsNotFound(err) {
		t.Errorf("error %v: want ErrNotFound in an *OpError for operation 1, got %+v", err, opErr)
	}
	assertUnchanged(t, k, before)
}
