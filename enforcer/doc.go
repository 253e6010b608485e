// Package enforcer is nftwarden's policy engine. It keeps a model of the cluster
// (pods, namespaces, NetworkPolicies) in memory, compiles it into the desired
// state of one nftables table (package nft), and turns every change into the
// smallest transaction that expresses it.
//
// # What it emits
//
// The program is described in PROGRAM.md beside this file: one base chain on
// the forward hook (egress side, then the ingress chain, which an egress allow
// goes on to) dispatches new connections through
// verdict maps keyed by local pod IP to one chain per isolated local pod
// (pod-in-<ns>/<pod>); that chain jumps to one chain per selecting policy
// (pol-in-<ns>/<policy>) and ends in drop. A policy chain matches ports with
// inline comparisons (a set for lists of more than four), then peers: a
// selector pair by a jump to its peer chain, which looks the address up,
// with the pair's tag, in the peer sets every pair shares (each shared by
// every policy that names the pair: `ip saddr . <tag> @peers-v4-<n>`); an
// ipBlock in an interval set with the excepts carved out; a named port in the
// named-port sets, as (pod IP, protocol, port, the rule's tag). A few sets per
// family instead of one per group keep the kernel from walking thousands of
// sets by name when it loads the program (taggedsets.go). Per-packet work
// does not grow with the number of policies or pods in the cluster.
//
// The base chain accepts established connections first. RevokeDenied deletes
// the conntrack entries of those a change denies; the program drops the TCP
// segments that would revive them reversed (picked up as new mid-stream, from
// a pod isolated for ingress or to one isolated for egress), and RevokeDenied
// deletes the UDP flows that an answer in flight revived, when it is called
// again at RevokeResult.FollowUp.
//
// Only pods whose spec.nodeName is Config.NodeName are targets here; peer sets
// hold pod IPs cluster-wide. A policy direction is programmed (its chain and
// sets exist) only while it selects at least one local pod, so a node carries
// what its own pods need and not the whole cluster's policy.
//
// # The compiler's parts
//
// The compiler (compile.go) orchestrates parts that each own a kind of
// object and its reference counts: peer groups with their share of the peer
// sets and their chains (peergroups.go), the tags and sets those and the
// named-port sets share (taggedsets.go), the shared ipBlock and port-list
// sets (sharedsets.go), named-port sets (namedports.go), the dispatch maps and pod
// chains of local pods (dispatch.go), the policy chains, which name what
// the others own (policychains.go), and the ClusterNetworkPolicy tiers'
// subject groups (tiers.go), class chains and class maps (tierclasses.go)
// and shared selector peers (tierpeers.go); see TIERS.md. Addresses claimed by several pods are
// handled across all of them in conflicts.go. Every part writes through one
// writer (writer.go), which shares the sets' elements with the last
// reconcile's snapshot and journals the changes of the big shared sets
// instead of copying them (journal.go). A new kind of object is a new part
// with the same shape.
//
// # Logging, audit and counters
//
// Off by default, the program can log what policy drops (Config.LogDenied:
// every drop site goes to a shared chain that copies the packet to an NFLOG
// group under one per-node limit, then drops), what it allows
// (Config.LogAllowed: a third base chain logs new connections the policy
// chains let through), put every policy (Config.Audit) or the policies
// annotated EnforcementAnnotation: EnforcementAudit in audit mode (what they
// would deny is logged and accepted; they change no verdict), and count per
// policy and rule in named counters (Config.Counters; CounterInfo says what
// each counts). Decide's DirectionDecision.Audit is what audit mode would
// deny, exactly when the program logs it. PROGRAM.md, "Logging, audit and
// counters", gives the compiled form.
//
// # First-packet isolation
//
// With the node's pod CIDRs (Config.PodCIDRs, Engine.SetPodCIDRs), a new
// connection from or to an address inside them that no known local pod has
// (active, on this node, not hostNetwork) is dropped until its pod is
// upserted and flushed: a pod whose status has not reached the engine yet
// is not open to the world meanwhile (firstpacket.go). Decide answers such
// a direction DirectionDecision.Unknown. PROGRAM.md, "First-packet
// isolation", gives the compiled form.
//
// # The model
//
// The records of namespaces and policies as written live in go-memdb,
// indexed by ID only (schema.go). The pods, of which a node agent holds the
// whole cluster's, are a map by namespace and name, and the secondary
// indexes are typed maps owned by the model (indexes.go): active pods by
// address, parsed policies by namespace, local pods by namespace. memdb would
// add nothing to them but cost: each is read on every pod change, and a memdb
// index costs a radix insert and leaf per record (about 480 bytes per pod,
// against about 40 for a map entry) and a clone of the index for each read
// inside the open write transaction; none needs memdb's snapshots, since the
// engine serializes every read and write.
//
// # Incremental by construction
//
// Every upsert and delete updates only the objects it affects, found through
// indexes (pods by namespace and by IP, selector
// groups by namespace, policies by namespace), and records them in an
// nft.Scope. Flush diffs the programmed state against the desired state within
// that scope and sends one transaction; an identical upsert sends nothing. A
// chain whose rules changed in a few places gets those rules inserted or
// deleted (nft.Diff), not rewritten: a policy created or deleted on a pod
// that 2,000 others select changes one jump of the pod's chain. Any failure makes the next Flush a full
// Reconcile. One part waits for the Flush: the class maps of the
// ClusterNetworkPolicy tiers whose policies changed are computed when the
// desired state is read (compiler.settle), once for a burst of changes.
//
// # Cost
//
// Writes to the memdb tables go into one write transaction per burst,
// committed at the next Flush (one transaction per object costs tens of
// microseconds of radix-tree copying); a pod is one map entry. A pod
// change re-checks only the selector groups of its namespace, the policies of
// its namespace and the named-port sets over every pod (egress rules with named
// ports and no peers or ipBlock peers, where the name resolves on whichever pod
// holds the destination; one set per distinct named-port list, shared by those
// rules); a namespace label change re-checks the
// namespace-selector groups. Policy direction chains are stable
// while their namespace keeps a local pod. A change costs tens to a few hundred
// microseconds and sends a handful of operations regardless of cluster size
// (see BenchmarkEngineDelta*).
//
// # The CNI path
//
// A pod's status, which gives the engine its addresses, is written after
// its sandbox is up, so without help a new pod talks freely until that
// status arrives. A CNI plugin, or an agent that embeds the engine, closes
// that window with the synchronous pod API (cnipods.go): StartPod gives a
// local pod the addresses of its CNI result, which the pod keeps while its
// upserts carry none (the first status with IPs ends that; a mismatch is
// logged and the status wins), flushes, and returns once a successful kernel
// batch carried the pod; StopPod (CNI DEL) takes addresses away although the
// pod object may still list them, until a new sandbox's address or a
// StartPod; PodProgrammed (CNI CHECK) says whether the kernel holds the
// pod's latest change. DeletePod forgets all of it. Changes of local pods
// are numbered and each successful Flush or Reconcile records the number it
// carried, so concurrent StartPods share one batch and wait for it within
// their context. Before the first successful Flush or Reconcile the calls
// answer ErrNotSynced: a batch of a model the caller has not filled yet
// would empty the table. Only local pods carry this bookkeeping.
//
// # Two live pods claiming one address
//
// During IP reuse a new pod can be given the address of a pod whose deletion
// the engine has not seen yet (or whose object lingers). Nothing in a packet
// tells the two apart, so the claimants of an address are judged as one and
// fail closed (conflicts.go):
//   - the address is in a peer group's set only if every claimant is a member
//     of the group;
//   - it matches no named port (ingress or egress, of any rule);
//   - a direction from or to it is not isolated if no claimant is; if the
//     same policies select every claimant, those policies decide, and the
//     verdict is the same for each of them (the dispatch element goes to the
//     pod chain of the lowest-ID local claimant); otherwise it is denied (the
//     element goes to the shared chain claimed-drop) until one claimant is
//     left. The policies of a claimant on another node are those of its
//     namespace that select it, as for a local one.
//
// Decide applies the same rule and names the claimants in its reason. Such
// addresses are rare: the model's IP index knows them, and every change that
// touches a claimant or a policy resyncs those addresses alone (peer-set
// elements, named-port elements, dispatch elements); without one the usual
// paths pay a map lookup per address.
//
// # Memory
//
// A node agent holds every pod of the cluster, so the bytes per pod matter
// more than anything else (see BenchmarkMemoryPerPod in podwatch). A pod
// record keeps only what policy reads, with the strings pods repeat (label
// keys and values, node and port names) interned as unique.Handle values.
// NewPod parses a pod once into an immutable Pod that UpsertParsedPod takes
// as it is: a caller that keeps its pods anyway (an informer cache) stores
// that Pod, and the engine's model shares it instead of holding a copy.
//
// # Reference evaluator
//
// Decide answers "is this flow allowed, and which policies decide it?" from the
// model and the policies as written, without looking at the compiled state. It
// serves `nftwarden explain` and is the oracle of the tests, which hold the
// compiled ruleset (traced in nft.Fake) against it.
//
// # ClusterNetworkPolicy
//
// ClusterNetworkPolicies (sigs.k8s.io/network-policy-api v1beta1) are stored
// in the model by name and parsed once (cnp.go), Decide evaluates them
// (cnpdecide.go), and the compiler programs them incrementally (tiers.go,
// TIERS.md) through UpsertClusterNetworkPolicy and DeleteClusterNetworkPolicy. For each direction: the Admin tier, policies by priority (lower
// first; equal priorities by name), rules in written order, first match:
// Accept allows the direction, Deny denies it, Pass ends the tier; then
// NetworkPolicy, which decides if one isolates the pod; then the Baseline
// tier the same way (a Pass there decides nothing); then allowed. Subjects
// and selector peers are active pods; networks peers match any address, pods'
// included. Claimants of one address are judged as one: a selector peer
// matches only if every claimant does, and a tier that judges them
// differently denies.
//
// Fail closed: a rule with any invalid or unsupported part (selector, CIDR,
// port, unknown action, peer or protocol of no or several kinds,
// domainNames, and with the experimental channel off nodes peers and named
// ports) matches nothing if it is an Accept and denies every connection of
// its direction otherwise. A policy whose tier is unknown or whose subject
// is invalid is evaluated in the Admin tier over every pod and only denies
// (its Accepts match nothing, its Passes deny). domainNames is not
// supported. TIERS.md beside this file gives the compiled form, with what
// the kernel's lookups were measured to cost.
//
// The experimental channel (Config.ClusterNetworkPolicyExperimental) adds
// nodes egress peers, which match the InternalIP and ExternalIP addresses of
// the Nodes whose labels they select (UpsertNode, DeleteNode: nodes.go;
// compiled as points of the class maps, tiernodes.go), and
// destinationNamedPort, which matches the container port of that name, of
// any protocol, of the pod at the destination address (egress: the peer,
// ingress: the subject; nothing where no single pod has the name; compiled
// as a lookup of the every-pod named-port set, tiernamed.go). A rule with a
// named port and a networks or nodes peer fails closed (the API forbids
// it).
//
// # Fail closed
//
// Invalid input never opens traffic: a policy with an invalid podSelector
// isolates every pod of its namespace and allows nothing; one with an unknown
// policyType isolates its pods for ingress and egress and allows nothing; an
// invalid peer (bad CIDR or except, zone, selector) or port (0, above 65535,
// endPort below port or with a named port, unknown protocol) matches nothing;
// a malformed pod IP is left out. The error is returned and logged. Nil
// objects and objects without a name or namespace are refused with an error
// and change nothing; deleting what does not exist is a no-op.
//
// Some odd input is accepted as Kubernetes reads it: an ipBlock CIDR with host
// bits is masked (198.19.0.1/16 is 198.19.0.0/16), an empty protocol is TCP,
// a port name no pod can have ("80") matches nothing, and container ports
// without a name, out of range or of an unknown protocol are ignored. Lists of
// any length (10,000 ports, 1,000 except blocks) compile; comments in the
// program are cut to the 128 bytes nft allows, since the kernel refuses a set
// whose comment does not fit its userdata.
//
// The package does no I/O of its own besides the Dataplane it is given, and
// never imports client-go: a CNI plugin can embed it and feed its own events.
package enforcer
