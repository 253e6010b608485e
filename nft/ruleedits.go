package nft

import "slices"

// maxRuleEdits bounds the edit scripts Diff looks for: a chain whose rules
// differ in more places is rewritten whole (ReplaceRules). The search costs
// about (rules) x (edits) comparisons and keeps (edits)^2 integers.
const maxRuleEdits = 256

// ruleEdits returns a shortest edit script from the rules from to the rules
// to, compared by SameRule: the indexes into from of the rules to delete,
// ascending, and the indexes into to of the rules to insert, ascending; the
// others are kept in order. ok is false when rewriting the chain whole
// costs as little (it sends 1 + len(to) operations) or the script is
// longer than maxRuleEdits: the caller sends ReplaceRules then.
//
// Applied as Diff emits it (deletions from the last, each at its index in
// from; then insertions from the first, each at its index in to), every
// operation's position is valid where it stands in the transaction.
func ruleEdits(from, to []Rule) (del, ins []int, ok bool) {
	pre := 0
	for pre < len(from) && pre < len(to) && SameRule(from[pre], to[pre]) {
		pre++
	}
	suf := 0
	for suf < len(from)-pre && suf < len(to)-pre && SameRule(from[len(from)-1-suf], to[len(to)-1-suf]) {
		suf++
	}
	a, b := from[pre:len(from)-suf], to[pre:len(to)-suf]
	budget := min(maxRuleEdits, len(to))
	if len(a) == 0 || len(b) == 0 {
		if len(a)+len(b) > budget && len(a)+len(b) > 0 {
			return nil, nil, false
		}
		return indexRun(pre, len(a)), indexRun(pre, len(b)), true
	}
	del, ins, ok = shortestEdits(len(a), len(b), func(i, j int) bool { return SameRule(a[i], b[j]) }, budget)
	for i := range del {
		del[i] += pre
	}
	for i := range ins {
		ins[i] += pre
	}
	return del, ins, ok
}

// indexRun returns from, from+1, ..., from+n-1.
func indexRun(from, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = from + i
	}
	return out
}

// shortestEdits is Myers' O((N+M)D) difference algorithm (E. W. Myers, "An
// O(ND) Difference Algorithm and Its Variations", 1986) on sequences a and b
// of lengths n and m whose elements a[i] and b[j] are equal when eq(i, j),
// giving up beyond maxD edits. It returns the deleted indexes of a and the
// inserted indexes of b, ascending.
func shortestEdits(n, m int, eq func(i, j int) bool, maxD int) (del, ins []int, ok bool) {
	off := maxD + 1
	v := make([]int, 2*maxD+3)
	var trace [][]int // trace[d]: v after round d
	for d := 0; d <= maxD; d++ {
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1] // from the diagonal above: an insertion
			} else {
				x = v[off+k-1] + 1 // from the diagonal left: a deletion
			}
			y := x - k
			for x < n && y < m && eq(x, y) {
				x++
				y++
			}
			v[off+k] = x
			if x >= n && y >= m {
				trace = append(trace, slices.Clone(v))
				del, ins = backtrack(trace, off, n, m)
				return del, ins, true
			}
		}
		trace = append(trace, slices.Clone(v))
	}
	return nil, nil, false
}

// backtrack walks the rounds of shortestEdits back from (n, m) and collects
// its edits.
func backtrack(trace [][]int, off, n, m int) (del, ins []int) {
	x, y := n, m
	for d := len(trace) - 1; d > 0; d-- {
		prev := trace[d-1]
		k := x - y
		var pk int
		if k == -d || (k != d && prev[off+k-1] < prev[off+k+1]) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := prev[off+pk]
		py := px - pk
		if pk == k+1 {
			ins = append(ins, py)
		} else {
			del = append(del, px)
		}
		x, y = px, py
	}
	slices.Reverse(del)
	slices.Reverse(ins)
	return del, ins
}
