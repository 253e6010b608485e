package cniplugin

import (
	"io"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
)

// FuzzParse feeds arbitrary stdin and CNI_ARGS to what ADD, CHECK and DEL
// parse, and prints the pass-through result as ADD would: nothing may panic,
// and whatever is accepted has a pod and at least one address (the daemon is
// never asked to program a pod with nothing). The seeds run with go test.
func FuzzParse(f *testing.F) {
	prev := `{"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}], "ips": [{"interface": 0, "address": "198.18.0.10/24"}]}`
	for _, seed := range []struct{ stdin, args string }{
		{`{"cniVersion": "1.0.0", "name": "n", "prevResult": ` + prev + `}`, "K8S_POD_NAMESPACE=a;K8S_POD_NAME=b"},
		{`{"cniVersion": "0.4.0", "name": "n", "prevResult": {"ips": [{"version": "4", "address": "198.18.0.10/24"}]}}`, "K8S_POD_NAMESPACE=a;K8S_POD_NAME=b"},
		{`{"cniVersion": "1.1.0", "name": "n", "timeout": "1ms", "socket": "", "prevResult": {"ips": [{"interface": -1, "address": "::1/128"}]}}`, "IgnoreUnknown=0;X=1"},
		{`{"cniVersion": "9.9.9", "name": "n", "prevResult": {"ips": null, "interfaces": [null]}}`, "="},
		{`{"prevResult": {"cniVersion": "1.0.0", "ips": [null, {"address": "198.18.0.10/33"}]}}`, ";;"},
		{`null`, ""},
		{`{"cniVersion": "1.0.0", "prevResult": {"ips": [{"interface": 0, "address": "198.18.0.10/24"}], "interfaces": [null]}}`, "K8S_POD_NAMESPACE=a;K8S_POD_NAME=b"},
	} {
		f.Add([]byte(seed.stdin), seed.args)
	}
	f.Fuzz(func(t *testing.T, stdin []byte, cniArgs string) {
		cl, err := parse(&skel.CmdArgs{StdinData: stdin, Args: cniArgs}, true)
		if err != nil {
			return
		}
		if cl.req.Namespace == "" || cl.req.Name == "" || len(cl.req.IPs) == 0 {
			t.Fatalf("accepted without a pod or addresses: %+v", cl.req)
		}
		if res, err := cl.conf.PrevResult.GetAsVersion(cl.conf.CNIVersion); err == nil {
			_ = res.PrintTo(io.Discard)
		}
	})
}
