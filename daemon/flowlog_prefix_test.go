package daemon

import (
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
)

func TestParseLogPrefix(t *testing.T) {
	tests := []struct {
		prefix string
		want   logPrefix
		ok     bool
	}{
		{"nftw deny in np", logPrefix{Action: actionDeny, Direction: enforcer.Ingress, HasDirection: true, Site: siteNetworkPolicy}, true},
		{"nftw deny eg admin", logPrefix{Action: actionDeny, Direction: enforcer.Egress, HasDirection: true, Site: siteAdmin}, true},
		{"nftw deny in baseline", logPrefix{Action: actionDeny, Direction: enforcer.Ingress, HasDirection: true, Site: siteBaseline}, true},
		{"nftw deny eg claimed", logPrefix{Action: actionDeny, Direction: enforcer.Egress, HasDirection: true, Site: siteClaimed}, true},
		{"nftw deny eg unknown", logPrefix{Action: actionDeny, Direction: enforcer.Egress, HasDirection: true, Site: siteUnknown}, true},
		{"nftw deny in unknown", logPrefix{Action: actionDeny, Direction: enforcer.Ingress, HasDirection: true, Site: siteUnknown}, true},
		{"nftw audit in unknown", logPrefix{Action: actionAudit, Direction: enforcer.Ingress, HasDirection: true, Site: siteUnknown}, true},
		{"nftw deny - unknown", logPrefix{}, false},
		{"nftw allow - unknown", logPrefix{}, false},
		{"nftw audit in np", logPrefix{Action: actionAudit, Direction: enforcer.Ingress, HasDirection: true, Site: siteNetworkPolicy}, true},
		{"nftw audit eg baseline", logPrefix{Action: actionAudit, Direction: enforcer.Egress, HasDirection: true, Site: siteBaseline}, true},
		{"nftw allow - flow", logPrefix{Action: actionAllow, Site: siteFlow}, true},
		{"nftw allow - flow ", logPrefix{Action: actionAllow, Site: siteFlow}, true}, // the kernel keeps what the rule says
		{"", logPrefix{}, false},
		{"nftw", logPrefix{}, false},
		{"nftw deny in", logPrefix{}, false},
		{"nftw deny in np extra", logPrefix{}, false},
		{"nftx deny in np", logPrefix{}, false},
		{"nftw reject in np", logPrefix{}, false},
		{"nftw deny up np", logPrefix{}, false},
		{"nftw deny - np", logPrefix{}, false},
		{"nftw deny in flow", logPrefix{}, false},
		{"nftw audit in pods", logPrefix{}, false},
		{"nftw allow in flow", logPrefix{}, false},
		{"nftw allow - np", logPrefix{}, false},
		{"DROP: ", logPrefix{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			got, ok := parseLogPrefix(tt.prefix)
			if ok != tt.ok || (ok && got != tt.want) {
				t.Errorf("parseLogPrefix(%q) = %+v, %v; want %+v, %v", tt.prefix, got, ok, tt.want, tt.ok)
			}
		})
	}
}
