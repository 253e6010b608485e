// Package nft programs one nftables table, `inet nftwarden` by default, and is
// the only package of nftwarden that touches the kernel. It knows nothing of
// Kubernetes: its callers describe what they want in its own terms, and it turns
// that into atomic netlink transactions.
//
// What it provides:
//
//   - A typed description of the table (objects.go): State holds chains, sets
//     and named objects (counters and limits, namedobj.go); rules are built
//     from a small closed vocabulary of expressions (conntrack state, TCP
//     flags, comparisons and ranges on a few packet fields, lookups in named
//     sets and verdict maps, counters, named counters and limits, logs to the
//     kernel log or to NFLOG, verdicts), so that every consumer of a State
//     (kernel lowering, renderer, tracer) handles every case.
//   - Transactions (transaction.go): ordered operations applied as one atomic
//     batch, and Diff (diff.go), which computes the smallest correctly ordered
//     transaction from one State to another, optionally limited to a Scope of
//     objects the caller knows it touched. A chain whose rules differ in a
//     few places gets those rules inserted or deleted by position
//     (ruleedits.go), not all of them rewritten; Kernel turns positions into
//     the kernel's rule handles, which it keeps (kernel_rules.go).
//   - Dataplane, implemented by Kernel (netlink through github.com/google/nftables,
//     except set elements, which it marshals itself (elementmsgs.go); no nft
//     binary at run time) and by Fake (memory, same transaction rules),
//     with Apply for deltas and Reconcile to converge the table to a full desired
//     State without ever deleting it.
//   - A change monitor (Kernel.WatchChanges, monitor.go): the kernel's nf_tables
//     notifications, filtered to batches of other sockets that touched our
//     table, reported once per batch with the committing process, so drift is
//     known within milliseconds; and TamperEvident (Kernel.Untouched, Fake),
//     which tells a periodic resync when it may trust its own record instead
//     of reading the whole table.
//   - Render, the table as `nft list table` prints it, for golden tests, reviews
//     and the daemon's dump command; and Trace, which walks a packet through a
//     State with nftables semantics, so that policy tests run without a kernel.
//   - Conntrack (conntrack.go), which deletes the connection tracking entries a
//     caller's matcher selects, so that connections a policy change denies stop
//     although the base chains accept established traffic first.
//
// What it must not do:
//
//   - touch any table other than its own, or anything outside nftables (routes,
//     sysctls, interfaces), except conntrack entries that a caller selected one
//     by one (never a flush of the table);
//   - delete and recreate the table to synchronise it: a packet must never see a
//     missing or half-built table;
//   - exec the nft binary or depend on Kubernetes packages;
//   - list the kernel on the hot path: callers keep their desired State and send
//     deltas; Read and Reconcile are for start-up, timers and recovery.
package nft
