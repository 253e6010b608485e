package main

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/nftwarden/nftwarden/integration/cluster"
	"github.com/nftwarden/nftwarden/integration/internal/bulk"
	"github.com/nftwarden/nftwarden/podwatch/podwatchtest"
)

// write is one measured API write and the kernel change that shows it.
type write struct {
	what   string // for errors: "zone of pod team-0001/app-3-..."
	object string // the object written (objectKey), as the API watch names it
	do     func(context.Context) error
	change cluster.NFTChange
}

// The kinds of change, in the order each mode runs them (pod-delete
// deletes the pods pod-ip gave addresses, policy-delete the policies
// policy-create made).
const (
	kindPodLabel     = "pod-label"
	kindNSLabel      = "ns-label"
	kindPodIP        = "pod-ip"
	kindPodDelete    = "pod-delete"
	kindPolicyCreate = "policy-create"
	kindPolicyDelete = "policy-delete"
	kindBusyCreate   = "busy-policy-create"
	kindBusyDelete   = "busy-policy-delete"
)

var kinds = []string{kindPodLabel, kindNSLabel, kindPodIP, kindPodDelete, kindPolicyCreate, kindPolicyDelete, kindBusyCreate, kindBusyDelete}

// writer makes the writes of each kind, keeping what earlier writes changed.
type writer struct {
	plan    *plan
	client  kubernetes.Interface
	workers int

	// zoneFlip: pods whose zone label differs from podwatchtest's;
	// labelled is the cursor over labelPods (remote pods of the staging
	// namespaces).
	labelPods []int
	labelled  int
	zoneFlip  map[int]bool
	// prodNS: the prod namespaces, whose env label takes their zone-a pods
	// in and out of the peer set; dev: those now labelled env=dev.
	prodNS   []int
	nsCursor int
	dev      map[int]bool
	// nextPod numbers the pods pod-ip creates (after the loaded ones);
	// addressed are those given an address, not yet deleted.
	nextPod   int
	addressed []createdPod
	// hosting namespaces take the policies policy-create makes; created
	// are those not yet deleted.
	hosting    []int
	nextPolicy int
	created    []policyRef
	// busy is how many policies select the busy pod (the local pod of the
	// first hosting namespace) before the busy kinds' writes, which add
	// and remove more; busyLoaded: those are in the API server.
	// busyCreated are the measured ones not yet deleted.
	busy        int
	busyLoaded  bool
	nextBusy    int
	busyCreated []policyRef
}

type createdPod struct {
	index int
	obj   *corev1.Pod
}

type policyRef struct{ namespace, name string }

func newWriter(p *plan, client kubernetes.Interface, workers, busy int) *writer {
	return &writer{
		plan: p, client: client, workers: workers, busy: busy,
		labelPods: p.remotePods(p.ofEnv("staging")),
		zoneFlip:  map[int]bool{},
		prodNS:    p.ofEnv("prod"),
		dev:       map[int]bool{},
		nextPod:   p.pods,
		hosting:   p.hosting(),
	}
}

// prepare returns n writes of kind, after the unmeasured work they need
// (pod-ip creates its pods without status). With distinct (a burst, whose
// writes are all in flight together), each write changes another object, so
// a kind may offer fewer writes than asked (namespace label: one per prod
// namespace); otherwise a namespace's label may flip again once its last
// flip is in the kernel.
func (w *writer) prepare(ctx context.Context, kind string, n int, distinct bool) ([]write, error) {
	switch kind {
	case kindPodLabel:
		return w.podLabels(n), nil
	case kindNSLabel:
		if distinct {
			n = min(n, len(w.prodNS))
		}
		return w.nsLabels(n), nil
	case kindPodIP:
		return w.podIPs(ctx, n)
	case kindPodDelete:
		return w.podDeletes(n), nil
	case kindPolicyCreate:
		return w.policyCreates(n), nil
	case kindPolicyDelete:
		return w.policyDeletes(n, &w.created), nil
	case kindBusyCreate:
		if err := w.loadBusy(ctx); err != nil {
			return nil, err
		}
		return w.busyCreates(n), nil
	case kindBusyDelete:
		return w.policyDeletes(n, &w.busyCreated), nil
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}

// elementChange is the add (in) or delete of pod i's IPv4 address in a set.
func elementChange(i int, in bool) cluster.NFTChange {
	op := cluster.NFTDelete
	if in {
		op = cluster.NFTAdd
	}
	return cluster.NFTChange{Elements: true, Op: op, Needle: addr4(i)}
}

// podLabels flips the zone label (a <-> b) of remote pods of staging
// namespaces, each once, in turn: zone a is in policy-2's peer set.
func (w *writer) podLabels(n int) []write {
	out := make([]write, 0, n)
	for range n {
		i := w.labelPods[w.labelled%len(w.labelPods)]
		w.labelled++
		// podwatchtest gives even pods zone a; the write flips the zone.
		wasA := (i%2 == 0) != w.zoneFlip[i]
		w.zoneFlip[i] = !w.zoneFlip[i]
		inA := !wasA
		zone := map[bool]string{true: "a", false: "b"}[inA]
		ns, name := podName(i, w.plan)
		patch := fmt.Appendf(nil, `{"metadata":{"labels":{"security.example.com/zone":%q}}}`, zone)
		out = append(out, write{
			what:   fmt.Sprintf("zone=%s on pod %s/%s", zone, ns, name),
			object: objectKey("pods", ns, name),
			do: func(ctx context.Context) error {
				_, err := w.client.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
				return err
			},
			change: elementChange(i, inA),
		})
	}
	return out
}

func podName(i int, p *plan) (namespace, name string) {
	pod := podwatchtest.Pod(podwatchtest.NamespaceName(i/p.perNS), i, "")
	return pod.Namespace, pod.Name
}

// nsLabels flips the env label (prod <-> dev) of prod namespaces in turn:
// their zone-a pods leave or join policy-2's peer set, which selects prod
// and staging namespaces. The change watched is one of those pods.
func (w *writer) nsLabels(n int) []write {
	out := make([]write, 0, n)
	for range n {
		j := w.prodNS[w.nsCursor%len(w.prodNS)]
		w.nsCursor++
		w.dev[j] = !w.dev[j]
		toProd := !w.dev[j]
		labels := maps.Clone(podwatchtest.Namespace(j).Labels)
		if !toProd {
			labels["env"] = "dev"
		}
		watched := w.plan.zoneAPod(j)
		name := podwatchtest.NamespaceName(j)
		patch := fmt.Appendf(nil, `{"metadata":{"labels":{"env":%q}}}`, labels["env"])
		out = append(out, write{
			what:   fmt.Sprintf("env=%s on namespace %s", labels["env"], name),
			object: objectKey("namespaces", "", name),
			do: func(ctx context.Context) error {
				_, err := w.client.CoreV1().Namespaces().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
				return err
			},
			change: elementChange(watched, toProd),
		})
	}
	return out
}

// podIPs creates n pods of zone a in staging namespaces, on other nodes and
// without status (unmeasured), and returns the writes of their status with
// an address, as a kubelet writes it once the sandbox runs: each address
// joins policy-2's peer set.
func (w *writer) podIPs(ctx context.Context, n int) ([]write, error) {
	staging := w.plan.ofEnv("staging")
	first := w.nextPod
	if first+n > maxPodIndex {
		return nil, fmt.Errorf("pod addresses exhausted (%d pods)", first+n)
	}
	w.nextPod += n
	pods := make([]*corev1.Pod, n)
	err := bulk.Parallel(ctx, w.workers, n, "pods without status", func(ctx context.Context, k int) error {
		i := first + k
		p := podwatchtest.Pod(podwatchtest.NamespaceName(staging[k%len(staging)]), i, fmt.Sprintf("bench-node-%03d", i%w.plan.nodes))
		p.Name = fmt.Sprintf("lat-ip-%06d", i)
		p.Labels["security.example.com/zone"] = "a"
		created, err := w.client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		pods[k] = created
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]write, n)
	for k, pod := range pods {
		i := first + k
		pod.Status = podwatchtest.PodStatus(i, pod.CreationTimestamp)
		w.addressed = append(w.addressed, createdPod{index: i, obj: pod})
		out[k] = write{
			what:   fmt.Sprintf("status with %s of pod %s/%s", podwatchtest.PodIP(i), pod.Namespace, pod.Name),
			object: objectKey("pods", pod.Namespace, pod.Name),
			do: func(ctx context.Context) error {
				_, err := w.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
				return err
			},
			change: elementChange(i, true),
		}
	}
	return out, nil
}

// podDeletes deletes up to n of the pods podIPs gave addresses, with grace
// period 0 (as the kubelet confirms a deletion, and as the harness deletes).
func (w *writer) podDeletes(n int) []write {
	n = min(n, len(w.addressed))
	out := make([]write, n)
	for k, p := range w.addressed[:n] {
		out[k] = write{
			what:   fmt.Sprintf("deletion of pod %s/%s", p.obj.Namespace, p.obj.Name),
			object: objectKey("pods", p.obj.Namespace, p.obj.Name) + deletedSuffix,
			do: func(ctx context.Context) error {
				return w.client.CoreV1().Pods(p.obj.Namespace).Delete(ctx, p.obj.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
			},
			change: elementChange(p.index, false),
		}
	}
	w.addressed = w.addressed[n:]
	return out
}

// policyChain is the NUL-terminated end of a policy's chain name
// (pol-in-<namespace>/<name>), which a rule that jumps to the chain carries
// too.
func policyChain(p policyRef) []byte { return fmt.Appendf(nil, "%s/%s\x00", p.namespace, p.name) }

// policyCreates creates n policies in turn in the namespaces with a local
// pod, each selecting that pod (and the namespace's other pods of its app)
// for ingress from the namespace's frontend pods on port 8080: a policy
// chain and a jump to it in the pod's chain.
func (w *writer) policyCreates(n int) []write {
	out := make([]write, n)
	for k := range out {
		j := w.hosting[w.nextPolicy%len(w.hosting)]
		ref := policyRef{namespace: podwatchtest.NamespaceName(j), name: fmt.Sprintf("lat-%06d", w.nextPolicy)}
		w.nextPolicy++
		r, _ := w.plan.localPod(j)
		app := podwatchtest.Pod(ref.namespace, j*w.plan.perNS+r, "").Labels["app.kubernetes.io/name"]
		w.created = append(w.created, ref)
		out[k] = w.policyCreate(ref, map[string]string{"app.kubernetes.io/name": app})
	}
	return out
}

// busyPod is the busy pod's selector: the local pod of the first hosting
// namespace, and only it (its app label is unique among the pods that share
// its pod-template-hash).
func (w *writer) busyPod() (namespace int, selector map[string]string) {
	j := w.hosting[0]
	r, _ := w.plan.localPod(j)
	l := podwatchtest.Pod(podwatchtest.NamespaceName(j), j*w.plan.perNS+r, "").Labels
	return j, map[string]string{"app.kubernetes.io/name": l["app.kubernetes.io/name"], "pod-template-hash": l["pod-template-hash"]}
}

// loadBusy creates, once and unmeasured, the w.busy policies that select
// the busy pod, so that its chain holds a jump to each of them.
func (w *writer) loadBusy(ctx context.Context) error {
	if w.busyLoaded {
		return nil
	}
	j, sel := w.busyPod()
	ns := podwatchtest.NamespaceName(j)
	err := bulk.Parallel(ctx, w.workers, w.busy, "policies of the busy pod", func(ctx context.Context, k int) error {
		np := policyFor(policyRef{namespace: ns, name: fmt.Sprintf("busy-base-%05d", k)}, sel)
		if _, err := w.client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create policy %s/%s: %w", np.Namespace, np.Name, err)
		}
		return nil
	})
	w.busyLoaded = err == nil
	return err
}

// busyCreates creates n more policies that select the busy pod: each adds
// a policy chain and one jump among the busy pod's w.busy others.
func (w *writer) busyCreates(n int) []write {
	j, sel := w.busyPod()
	out := make([]write, n)
	for k := range out {
		ref := policyRef{namespace: podwatchtest.NamespaceName(j), name: fmt.Sprintf("busy-%06d", w.nextBusy)}
		w.nextBusy++
		w.busyCreated = append(w.busyCreated, ref)
		out[k] = w.policyCreate(ref, sel)
	}
	return out
}

// policyFor is a policy that selects the pods matching selector for
// ingress from their namespace's frontend pods on TCP 8080.
func policyFor(ref policyRef, selector map[string]string) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(8080)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ref.namespace, Name: ref.name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selector},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "frontend"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}},
		},
	}
}

// policyCreate is the creation of policyFor(ref, selector), shown by its
// chain (or a jump to it) added.
func (w *writer) policyCreate(ref policyRef, selector map[string]string) write {
	np := policyFor(ref, selector)
	return write{
		what:   "creation of policy " + ref.namespace + "/" + ref.name,
		object: objectKey("networkpolicies", ref.namespace, ref.name),
		do: func(ctx context.Context) error {
			_, err := w.client.NetworkingV1().NetworkPolicies(ref.namespace).Create(ctx, np, metav1.CreateOptions{})
			return err
		},
		change: cluster.NFTChange{Op: cluster.NFTAdd, Needle: policyChain(ref)},
	}
}

// policyDeletes deletes up to n of the policies in created (made by
// policyCreates or busyCreates), and forgets them.
func (w *writer) policyDeletes(n int, created *[]policyRef) []write {
	n = min(n, len(*created))
	out := make([]write, n)
	for k, ref := range (*created)[:n] {
		out[k] = write{
			what:   "deletion of policy " + ref.namespace + "/" + ref.name,
			object: objectKey("networkpolicies", ref.namespace, ref.name),
			do: func(ctx context.Context) error {
				return w.client.NetworkingV1().NetworkPolicies(ref.namespace).Delete(ctx, ref.name, metav1.DeleteOptions{})
			},
			change: cluster.NFTChange{Op: cluster.NFTDelete, Needle: policyChain(ref)},
		}
	}
	*created = (*created)[n:]
	return out
}
