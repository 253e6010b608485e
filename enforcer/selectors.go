package enforcer

import (
	"encoding/binary"
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Converting a policy's label selectors (metav1.LabelSelectorAsSelector)
// validates every key and value, with regular expressions: a few µs each,
// some 4% of the CPU of the engine's start-up at 10,000 policies. Policies
// repeat few selectors (app=web, role=db), so the conversions are cached,
// keyed by the selector's content. A labels.Selector is immutable (its
// methods return new ones), so policies share one. The caches come from a
// sync.Pool (no lock; dropped at a garbage collection: they pin nothing for
// long); only selectors that convert without error are kept.

// selectorCacheMax bounds a cache: selectors that never repeat must not grow
// it forever.
const selectorCacheMax = 4096

type selectorCache struct {
	m   map[string]labels.Selector
	key []byte // scratch for the key
}

var selectorCaches = sync.Pool{New: func() any {
	return &selectorCache{m: make(map[string]labels.Selector, 64)}
}}

// asSelector is metav1.LabelSelectorAsSelector(ls), cached.
func asSelector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil {
		return metav1.LabelSelectorAsSelector(ls)
	}
	c := selectorCaches.Get().(*selectorCache)
	defer selectorCaches.Put(c)
	c.key = appendSelectorKey(c.key[:0], ls)
	if s, ok := c.m[string(c.key)]; ok {
		return s, nil
	}
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return s, err
	}
	if len(c.m) >= selectorCacheMax {
		clear(c.m)
	}
	c.m[string(c.key)] = s
	return s, nil
}

// appendSelectorKey appends a key that tells selectors apart: every string
// length-prefixed (no separator a key or value could contain), labels in
// key order (the map's order varies), expressions in their order.
func appendSelectorKey(b []byte, ls *metav1.LabelSelector) []byte {
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(ls.MatchLabels)))
	if len(ls.MatchLabels) == 1 {
		for k, v := range ls.MatchLabels {
			str(k)
			str(v)
		}
	} else if len(ls.MatchLabels) > 1 {
		var buf [8]string
		keys := buf[:0]
		for k := range ls.MatchLabels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			str(k)
			str(ls.MatchLabels[k])
		}
	}
	b = binary.AppendUvarint(b, uint64(len(ls.MatchExpressions)))
	for i := range ls.MatchExpressions {
		r := &ls.MatchExpressions[i]
		str(r.Key)
		str(string(r.Operator))
		b = binary.AppendUvarint(b, uint64(len(r.Values)))
		for _, v := range r.Values {
			str(v)
		}
	}
	return b
}
