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
// It speaks nfnetlink_log itself over github.com/mdlayher/netlink (the
// netlink library the nft package already uses): the protocol is two
// messages, a bind with its settings and the packets, and
// github.com/florianl/go-nflog/v2 cannot be had from the module proxy.
//
// The rule's copy is cut to Config.CopyRange bytes (128 by default: the IP
// header, IPv6 extension headers and the transport ports fit), which keeps
// the kernel's and the socket's share small; Event.Length is the packet's
// full length, read from its IP header.
package nflog
