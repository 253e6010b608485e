package conformance

import (
	"fmt"
	"strings"
)

// Peer matches pods by namespace and name, as upstream's Peer: an empty field
// matches everything.
type Peer struct {
	Namespace string
	Pod       string
}

// Matches reports whether p selects pod.
func (p Peer) Matches(pod PodRef) bool {
	return (p.Namespace == "" || p.Namespace == pod.Namespace) && (p.Pod == "" || p.Pod == pod.Name)
}

// Table is a from×to matrix of connectivity over a fixed list of pods. A cell is
// unknown until it is set (observations start unknown, expectations start with
// a default).
type Table struct {
	pods  []PodRef
	index map[PodRef]int
	cells [][]int8 // -1 unknown, 0 denied, 1 allowed
}

func newTable(pods []PodRef, def int8) *Table {
	t := &Table{pods: append([]PodRef(nil), pods...), index: make(map[PodRef]int, len(pods))}
	for i, p := range pods {
		t.index[p] = i
	}
	t.cells = make([][]int8, len(pods))
	for i := range t.cells {
		row := make([]int8, len(pods))
		for j := range row {
			row[j] = def
		}
		t.cells[i] = row
	}
	return t
}

// Pods is the list of pods the table covers, in order.
func (t *Table) Pods() []PodRef { return t.pods }

// Set sets one cell; pods outside the table are a programming error of the case.
func (t *Table) Set(from, to PodRef, allowed bool) {
	i, ok1 := t.index[from]
	j, ok2 := t.index[to]
	if !ok1 || !ok2 {
		panic(fmt.Sprintf("reachability: %s -> %s is not in the table %v", from, to, t.pods))
	}
	t.cells[i][j] = b2i(allowed)
}

// Get returns a cell and whether it is known.
func (t *Table) Get(from, to PodRef) (allowed, known bool) {
	c := t.cells[t.index[from]][t.index[to]]
	return c == 1, c >= 0
}

func b2i(b bool) int8 {
	if b {
		return 1
	}
	return 0
}

// Reachability is the expected and observed connectivity of one probe (one
// port and protocol) over the pod matrix, built like upstream's Reachability.
type Reachability struct {
	Expected *Table
	Observed *Table
}

// NewReachability returns a table over pods in which every flow is expected to
// be def (upstream always starts from true).
func NewReachability(pods []PodRef, def bool) *Reachability {
	return &Reachability{Expected: newTable(pods, b2i(def)), Observed: newTable(pods, -1)}
}

// NewPokes returns a table in which no flow is expected, hence none probed,
// until Expect names it: upstream network-policy-api conformance states its
// expectations pod by pod (PokeServer) rather than over the whole matrix.
func NewPokes(pods []PodRef) *Reachability {
	return &Reachability{Expected: newTable(pods, -1), Observed: newTable(pods, -1)}
}

// Probed reports whether the flow is to be probed: it has an expectation and
// is not a pod to itself.
func (r *Reachability) Probed(from, to PodRef) bool {
	_, known := r.Expected.Get(from, to)
	return known && from != to
}

// Expect sets the expectation of one flow.
func (r *Reachability) Expect(from, to PodRef, allowed bool) { r.Expected.Set(from, to, allowed) }

// ExpectAllIngress sets every flow into pod.
func (r *Reachability) ExpectAllIngress(pod PodRef, allowed bool) {
	for _, from := range r.Expected.pods {
		r.Expected.Set(from, pod, allowed)
	}
}

// ExpectAllEgress sets every flow out of pod.
func (r *Reachability) ExpectAllEgress(pod PodRef, allowed bool) {
	for _, to := range r.Expected.pods {
		r.Expected.Set(pod, to, allowed)
	}
}

// ExpectPeer sets every flow from a pod matched by from to a pod matched by to.
func (r *Reachability) ExpectPeer(from, to Peer, allowed bool) {
	for _, f := range r.Expected.pods {
		if !from.Matches(f) {
			continue
		}
		for _, t := range r.Expected.pods {
			if to.Matches(t) {
				r.Expected.Set(f, t, allowed)
			}
		}
	}
}

// Observe records a probe result.
func (r *Reachability) Observe(from, to PodRef, allowed bool) { r.Observed.Set(from, to, allowed) }

// Checked counts the flows that are probed.
func (r *Reachability) Checked() int {
	n := 0
	for _, from := range r.Expected.pods {
		for _, to := range r.Expected.pods {
			if r.Probed(from, to) {
				n++
			}
		}
	}
	return n
}

// Wrong counts the probed flows whose observation differs from the
// expectation or is missing. Flows from a pod to itself are ignored, as
// upstream ignores loopback.
func (r *Reachability) Wrong() int {
	wrong := 0
	for _, from := range r.Expected.pods {
		for _, to := range r.Expected.pods {
			if !r.Probed(from, to) {
				continue
			}
			exp, _ := r.Expected.Get(from, to)
			obs, known := r.Observed.Get(from, to)
			if !known || exp != obs {
				wrong++
			}
		}
	}
	return wrong
}

// Diff renders expected, observed and their comparison side by side: rows are
// sources, columns destinations (numbered as the rows); "." allowed, "X"
// denied, "?" not observed (or, in expected, not probed: see NewPokes), "-"
// the pod itself (not probed); in the comparison "." is right or not probed
// and "X" wrong.
func (r *Reachability) Diff() string {
	pods := r.Expected.pods
	w := 0
	for _, p := range pods {
		w = max(w, len(p.String()))
	}
	label := w + 4 // "NN " + name + " "
	block := max(label+2*len(pods), len("comparison"))
	var b strings.Builder
	for _, title := range []string{"expected", "observed", "comparison"} {
		fmt.Fprintf(&b, "%-*s   ", block, title)
	}
	b.WriteByte('\n')
	for range 3 {
		cols := strings.Repeat(" ", label-1)
		for i := range pods {
			cols += fmt.Sprintf(" %d", i%10)
		}
		fmt.Fprintf(&b, "%-*s   ", block, cols)
	}
	b.WriteByte('\n')
	for i, from := range pods {
		row := func(cell func(to PodRef) string) {
			s := fmt.Sprintf("%2d %-*s", i, w, from)
			for _, to := range pods {
				if from == to {
					s += " -"
					continue
				}
				s += " " + cell(to)
			}
			fmt.Fprintf(&b, "%-*s   ", block, s)
		}
		row(func(to PodRef) string {
			return mark(r.Expected.Get(from, to))
		})
		row(func(to PodRef) string {
			v, known := r.Observed.Get(from, to)
			return mark(v, known)
		})
		row(func(to PodRef) string {
			exp, _ := r.Expected.Get(from, to)
			obs, known := r.Observed.Get(from, to)
			return mark(!r.Probed(from, to) || known && exp == obs, true)
		})
		b.WriteByte('\n')
	}
	return b.String()
}

func mark(v, known bool) string {
	switch {
	case !known:
		return "?"
	case v:
		return "."
	default:
		return "X"
	}
}
