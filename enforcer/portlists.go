package enforcer

import (
	"encoding/binary"
	"runtime"
	"slices"
	"sync"
	"weak"
)

// portList is a pod's named container ports (sorted, deduplicated), one
// copy shared by every pod that has the same: the replicas of a workload
// name the same ports, and a copy per pod cost 32 to 64 bytes of the few
// hundred a pod costs the engine in all. A list is canonical while a pod
// holds it (two live pods with equal ports hold one pointer), and is
// collected when no pod does (the table keeps weak pointers).
type portList struct{ ports []namedPort }

// list returns the ports (nil for none).
func (l *portList) list() []namedPort {
	if l == nil {
		return nil
	}
	return l.ports
}

// portLists is the table of live lists by their encoding (portsKey). Pods
// are parsed concurrently (informer transforms, the CNI path): a mutex
// guards it.
var portLists = struct {
	sync.Mutex
	byKey map[string]weak.Pointer[portList]
}{byKey: map[string]weak.Pointer[portList]{}}

// sharedPortList returns the canonical list holding ports (nil for none); a
// new list holds a copy of ports.
func sharedPortList(ports []namedPort) *portList {
	if len(ports) == 0 {
		return nil
	}
	var buf [128]byte
	key := appendPortsKey(buf[:0], ports)
	portLists.Lock()
	defer portLists.Unlock()
	if l := portLists.byKey[string(key)].Value(); l != nil {
		return l
	}
	l := &portList{ports: slices.Clone(ports)}
	k := string(key)
	portLists.byKey[k] = weak.Make(l)
	runtime.AddCleanup(l, dropPortList, k)
	return l
}

// dropPortList forgets the collected list of key, unless a new one took
// its place meanwhile.
func dropPortList(key string) {
	portLists.Lock()
	defer portLists.Unlock()
	if portLists.byKey[key].Value() == nil {
		delete(portLists.byKey, key)
	}
}

// appendPortsKey appends an encoding of ports that differs for any two
// different lists (each name is prefixed by its length).
func appendPortsKey(b []byte, ports []namedPort) []byte {
	for _, p := range ports {
		name := p.Name.Value()
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
		b = append(b, p.Proto, byte(p.Port>>8), byte(p.Port))
	}
	return b
}
