package enforcer

// The named ports of pods are one shared list per distinct list.

import (
	"slices"
	"testing"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/nft"
)

func TestSharedPortList(t *testing.T) {
	port := func(name string, proto uint8, n uint16) namedPort {
		return namedPort{Name: unique.Make(name), Proto: proto, Port: n}
	}
	http := []namedPort{port("http", nft.ProtoTCP, 8080)}
	tests := []struct {
		name  string
		a, b  []namedPort
		equal bool
	}{
		{"same ports", http, []namedPort{port("http", nft.ProtoTCP, 8080)}, true},
		{"other port number", http, []namedPort{port("http", nft.ProtoTCP, 8081)}, false},
		{"other protocol", http, []namedPort{port("http", nft.ProtoUDP, 8080)}, false},
		{"other name", http, []namedPort{port("https", nft.ProtoTCP, 8080)}, false},
		{"one more port", http, []namedPort{port("http", nft.ProtoTCP, 8080), port("metrics", nft.ProtoTCP, 9090)}, false},
		// Without the length of each name, both would encode the same bytes.
		{"names that concatenate alike", []namedPort{port("x", nft.ProtoTCP, 0x0102), port("y", nft.ProtoTCP, 0x0304)},
			[]namedPort{port("x\x06\x01\x02y", nft.ProtoTCP, 0x0304)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := sharedPortList(tt.a), sharedPortList(tt.b)
			if (a == b) != tt.equal {
				t.Fatalf("shared lists of %v and %v: same = %v, want %v", tt.a, tt.b, a == b, tt.equal)
			}
			if !slices.Equal(a.list(), tt.a) || !slices.Equal(b.list(), tt.b) {
				t.Fatalf("lists hold %v and %v, want %v and %v", a.list(), b.list(), tt.a, tt.b)
			}
		})
	}
	if l := sharedPortList(nil); l != nil || l.list() != nil {
		t.Fatalf("no ports: %v, want nil", l)
	}
}

// TestPodsSharePorts: two replicas parsed apart hold one list.
func TestPodsSharePorts(t *testing.T) {
	replica := func(name string) *Pod {
		return NewPod(&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{
				{Name: "metrics", ContainerPort: 9090}, {Name: "http", ContainerPort: 8080},
			}}}},
		})
	}
	a, b := replica("a"), replica("b")
	if a.rec.Ports == nil || a.rec.Ports != b.rec.Ports {
		t.Fatalf("replicas hold port lists %p and %p, want one", a.rec.Ports, b.rec.Ports)
	}
	if got := a.rec.resolve("http", nft.ProtoTCP); len(got) != 1 || got[0] != 8080 {
		t.Fatalf("resolve(http) = %v, want [8080]", got)
	}
}
