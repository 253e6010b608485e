// Package nflog reads the packets that nftables rules copy to userspace with
// `log group N` (the kernel's NFLOG, nfnetlink_log) and hands them on as
// Events: the log prefix of the rule, the addresses, protocol and ports
// parsed from the packet's headers, and its length.
//
// It knows nothing of Kubernetes or of nftwarden's rules (the daemon gives
// the prefixes their meaning) and it never programs nftables: it only binds
// one NFLOG group of one network namespace and reads it.
//
// NFLOG is asynchronous, and so is the Reader: the kernel never waits for
// userspace. A packet's copy is queued in the kernel, sent to the socket in
// batches (Config.QueueThreshold packets or Config.FlushTimeout, whichever
// comes first) and the packet goes on at once; when the socket's receive
// buffer (Config.ReadBuffer) is full the kernel drops the batch and the next
// read fails with ENOBUFS. The Reader counts such overruns, and because it asks
// the kernel for per-group sequence numbers it also counts exactly how many
// events were lost (Stats.Lost: the gaps in the sequence). Between the socket
// and the consumer sits a bounded queue (Config.QueueSize); an event that
// finds it full is dropped and counted (Stats.QueueFull), so a slow consumer
// never stalls the reading of the socket either.
//
// One group of a network namespace has one reader: the kernel refuses a
// second socket binding the same group with EPERM (Open says so).
//
// The nfnetlink_log protocol is github.com/florianl/go-nflog/v2's: it binds
// and configures the group (copy mode and range, batching, sequence numbers)
// and receives on a goroutine of its own, calling the Reader for each packet
// message and each failed read. This package parses the packet's headers
// (event.go), sizes the socket buffer, queues and counts. What go-nflog
// does differently from the hand-written protocol this package had before:
//
//   - It cannot set the size of the kernel's batch buffer (NFULA_CFG_NLBUFSIZ);
//     the kernel's default, about a page, applies, so a batch of 128-byte
//     copies holds a dozen or so packets and a burst takes more reads (the
//     Config field KernelBatchBytes and DefaultKernelBatchBytes are gone).
//   - It does not send a flush timeout of 0; Config.FlushTimeout is rounded
//     up to the kernel's unit of 10 ms.
//   - It configures the group in several requests after the bind and takes
//     a packet message that comes between them for a bad reply: Open fails
//     ("mismatched sequence") if the group's rules log the kernel's default
//     batch of 100 packets within those microseconds.
//   - Before binding the group it sends the legacy per-family commands
//     (unbind, bind) for family AF_UNSPEC, which make nfnetlink_log the
//     network namespace's default logger of that family; rules with a log
//     group, as nftwarden's, do not use the default logger.
//   - It formats errors with %v: Open's error says "operation not
//     permitted" for a second reader, but errors.Is(err, unix.EPERM) no
//     longer holds.
//   - A message it cannot decode it skips without telling; such a packet is
//     counted in Stats.Lost (by the sequence gap), not in Stats.Malformed.
//   - Its Close races with its own goroutine right after the bind (a
//     WaitGroup joined inside the goroutine), so Reader.Close ends that
//     goroutine's context and closes go-nflog's socket itself.
//
// Until Run is called, go-nflog's goroutine holds the first batch it read
// and the kernel's further packets wait in the socket buffer, as they did.
//
// The rule's copy is cut to Config.CopyRange bytes (128 by default: the IP
// header, IPv6 extension headers and the transport ports fit), which keeps
// the kernel's and the socket's share small; Event.Length is the packet's
// full length, read from its IP header.
package nflog
