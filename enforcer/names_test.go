package enforcer

import (
	"strings"
	"testing"
)

func TestReadableName(t *testing.T) {
	long := strings.Repeat("a", 63) + "/" + strings.Repeat("b", 120)
	tests := []struct {
		name, id string
		want     string // "" when the name is cut: checked by the properties below
	}{
		{"whole pod name", "shop/db-0", "pod-in-shop/db-0"},
		{"dots and digits", "kube-system/coredns-7d8.x", "pod-in-kube-system/coredns-7d8.x"},
		{"too long", long, ""},
		{"character nft would need quoted", "shop/db 0", ""},
		{"underscore (never in a Kubernetes name)", "shop/db_0", ""},
		{"non-ASCII", "shop/dé", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := readableName("pod-in-", tc.id)
			if tc.want != "" {
				if got != tc.want || !wholeName(got) {
					t.Fatalf("readableName(%q) = %q (whole %v), want %q", tc.id, got, wholeName(got), tc.want)
				}
				return
			}
			if len(got) > maxChainName || wholeName(got) || !strings.HasPrefix(got, "pod-in-") {
				t.Fatalf("readableName(%q) = %q: want a cut name of at most %d bytes with a hash", tc.id, got, maxChainName)
			}
			for i := 0; i < len(got); i++ {
				if !nameChar(got[i]) && got[i] != '_' {
					t.Fatalf("readableName(%q) = %q holds %q, which nft prints only quoted", tc.id, got, got[i])
				}
			}
		})
	}
	// Cut names of ids with a common start stay apart.
	if a, b := readableName("pol-in-", long+"x"), readableName("pol-in-", long+"y"); a == b {
		t.Fatalf("two long ids share the name %q", a)
	}
}
