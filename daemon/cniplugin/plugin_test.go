package cniplugin_test

import (
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"

	"github.com/nftwarden/nftwarden/daemon/cniplugin"
	"github.com/nftwarden/nftwarden/daemon/cniwire"
)

// daemonSpec is how the fake daemon behaves in a case; down: nothing listens.
type daemonSpec struct {
	down   bool
	status int
	answer string
	delay  time.Duration
}

var (
	daemonOK    = daemonSpec{status: http.StatusOK, answer: `{"programmed": 1500000}`}
	daemonDown  = daemonSpec{down: true}
	daemonRetry = daemonSpec{status: http.StatusServiceUnavailable, answer: `{"error": "not ready yet", "retry": true}`}
)

func TestPluginProtocol(t *testing.T) {
	podReq := func(ips ...netip.Addr) cniwire.Request {
		return cniwire.Request{
			Namespace: "shop", Name: "web-0", UID: "0b7c1b2e-1111-4a4a-9999-000000000001",
			ContainerID: "c0ffee", Netns: "/var/run/netns/nftwarden-cni-test-absent", IfName: "eth0",
			IPs: ips, Timeout: cniplugin.DefaultTimeout,
		}
	}
	hostOnly := `{"cniVersion": "1.0.0", "interfaces": [{"name": "veth1"}], "ips": [{"interface": 0, "address": "198.18.0.1/32"}]}`
	tests := []struct {
		name     string
		command  string
		cniArgs  string // podArgs when empty
		version  string
		extra    map[string]string // nil: prevResult of version
		stdin    string            // instead of the generated configuration
		daemon   daemonSpec
		wantCode uint
		// wantCall is the request the daemon must get (none when nil).
		wantCall *fakeCall
		// passThrough: stdout must be prevResult (as parsed JSON).
		passThrough bool
		wantStderr  string
	}{
		{name: "ADD 1.1.0", command: "ADD", version: "1.1.0", daemon: daemonOK,
			wantCall: &fakeCall{cniwire.PathAdd, podReq(podIPs...)}, passThrough: true},
		{name: "ADD 1.0.0", command: "ADD", version: "1.0.0", daemon: daemonOK,
			wantCall: &fakeCall{cniwire.PathAdd, podReq(podIPs...)}, passThrough: true},
		{name: "ADD 0.4.0", command: "ADD", version: "0.4.0", daemon: daemonOK,
			wantCall: &fakeCall{cniwire.PathAdd, podReq(podIPs...)}, passThrough: true},
		{name: "ADD without K8S_POD_UID", command: "ADD", version: "1.0.0", daemon: daemonOK,
			cniArgs:     "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0",
			wantCall:    &fakeCall{cniwire.PathAdd, func() cniwire.Request { r := podReq(podIPs...); r.UID = ""; return r }()},
			passThrough: true},
		{name: "ADD with the timeout configured", command: "ADD", version: "1.0.0", daemon: daemonOK,
			extra:       map[string]string{"prevResult": strings.ReplaceAll(prevResult, "%s", "1.0.0"), "timeout": `"2500ms"`},
			wantCall:    &fakeCall{cniwire.PathAdd, func() cniwire.Request { r := podReq(podIPs...); r.Timeout = 2500 * time.Millisecond; return r }()},
			passThrough: true},
		{name: "ADD daemon down", command: "ADD", version: "1.0.0", daemon: daemonDown, wantCode: types.ErrTryAgainLater},
		{name: "ADD daemon 503", command: "ADD", version: "1.0.0", daemon: daemonRetry, wantCode: types.ErrTryAgainLater,
			wantCall: &fakeCall{cniwire.PathAdd, podReq(podIPs...)}},
		{name: "ADD daemon asks for a retry", command: "ADD", version: "1.0.0",
			daemon:   daemonSpec{status: http.StatusInternalServerError, answer: `{"error": "kernel batch failed", "retry": true}`},
			wantCode: types.ErrTryAgainLater, wantCall: &fakeCall{cniwire.PathAdd, podReq(podIPs...)}},
		{name: "ADD daemon 400", command: "ADD", version: "1.0.0",
			daemon:   daemonSpec{status: http.StatusBadRequest, answer: `{"error": "no ips"}`},
			wantCode: cniplugin.ErrDaemonRejected, wantCall: &fakeCall{cniwire.PathAdd, podReq(podIPs...)}},
		{name: "ADD pod unknown", command: "ADD", version: "1.0.0",
			daemon:   daemonSpec{status: http.StatusNotFound, answer: `{"error": "pod shop/web-0 not found"}`},
			wantCode: cniplugin.ErrPodNotFound, wantCall: &fakeCall{cniwire.PathAdd, podReq(podIPs...)}},
		{name: "ADD pod refused", command: "ADD", version: "1.0.0",
			daemon:   daemonSpec{status: http.StatusUnprocessableEntity, answer: `{"error": "pod shop/web-0 uses the host's network"}`},
			wantCode: cniplugin.ErrPodRefused, wantCall: &fakeCall{cniwire.PathAdd, podReq(podIPs...)}},
		{name: "ADD daemon 500", command: "ADD", version: "1.0.0",
			daemon:   daemonSpec{status: http.StatusInternalServerError, answer: `{"error": "boom"}`},
			wantCode: cniplugin.ErrDaemonAnswer, wantCall: &fakeCall{cniwire.PathAdd, podReq(podIPs...)}},
		{name: "ADD daemon answer does not parse", command: "ADD", version: "1.0.0",
			daemon:   daemonSpec{status: http.StatusOK, answer: `<html>`},
			wantCode: cniplugin.ErrDaemonAnswer, wantCall: &fakeCall{cniwire.PathAdd, podReq(podIPs...)}},
		{name: "ADD 200 with an error", command: "ADD", version: "1.0.0",
			daemon:   daemonSpec{status: http.StatusOK, answer: `{"error": "half done"}`},
			wantCode: cniplugin.ErrDaemonAnswer, wantCall: &fakeCall{cniwire.PathAdd, podReq(podIPs...)}},
		{name: "ADD malformed stdin", command: "ADD", stdin: `{"cniVersion": "1.0.0", "name": `, daemon: daemonOK,
			wantCode: types.ErrDecodingFailure},
		{name: "ADD stdin not an object", command: "ADD", stdin: `[1, 2]`, daemon: daemonOK, wantCode: types.ErrDecodingFailure},
		{name: "ADD timeout of the wrong type", command: "ADD", version: "1.0.0", daemon: daemonOK,
			extra: map[string]string{"timeout": "10"}, wantCode: types.ErrDecodingFailure},
		{name: "ADD timeout invalid", command: "ADD", version: "1.0.0", daemon: daemonOK,
			extra: map[string]string{"timeout": `"soon"`}, wantCode: types.ErrInvalidNetworkConfig},
		{name: "ADD timeout negative", command: "ADD", version: "1.0.0", daemon: daemonOK,
			extra: map[string]string{"timeout": `"-1s"`}, wantCode: types.ErrInvalidNetworkConfig},
		{name: "ADD prevResult malformed", command: "ADD", version: "1.0.0", daemon: daemonOK,
			extra:    map[string]string{"prevResult": `{"cniVersion": "1.0.0", "ips": [{"address": "not-an-ip"}]}`},
			wantCode: types.ErrDecodingFailure},
		{name: "ADD prevResult names a missing interface", command: "ADD", version: "1.0.0", daemon: daemonOK,
			extra:    map[string]string{"prevResult": `{"cniVersion": "1.0.0", "ips": [{"interface": 3, "address": "198.18.0.10/24"}]}`},
			wantCode: types.ErrDecodingFailure},
		{name: "ADD without prevResult", command: "ADD", version: "1.0.0", daemon: daemonOK, extra: map[string]string{},
			wantCode: types.ErrInvalidNetworkConfig},
		{name: "ADD prevResult without pod addresses", command: "ADD", version: "1.0.0", daemon: daemonOK,
			extra: map[string]string{"prevResult": hostOnly}, wantCode: cniplugin.ErrNoPodAddresses},
		{name: "ADD prevResult without interfaces", command: "ADD", version: "1.0.0", daemon: daemonOK,
			extra:    map[string]string{"prevResult": `{"cniVersion": "1.0.0", "ips": [{"address": "198.18.0.10/24"}]}`},
			wantCall: &fakeCall{cniwire.PathAdd, podReq(podIPs[0])}, passThrough: true},
		{name: "ADD CNI_ARGS malformed", command: "ADD", version: "1.0.0", daemon: daemonOK,
			cniArgs: "K8S_POD_NAMESPACE=shop;K8S_POD_NAME", wantCode: types.ErrInvalidEnvironmentVariables},
		{name: "ADD CNI_ARGS without the pod", command: "ADD", version: "1.0.0", daemon: daemonOK,
			cniArgs: "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop", wantCode: types.ErrInvalidEnvironmentVariables},
		{name: "ADD CNI_ARGS empty", command: "ADD", version: "1.0.0", daemon: daemonOK,
			cniArgs: "-", wantCode: types.ErrInvalidEnvironmentVariables},
		{name: "ADD CNI_ARGS invalid namespace", command: "ADD", version: "1.0.0", daemon: daemonOK,
			cniArgs: "K8S_POD_NAMESPACE=Shop!;K8S_POD_NAME=web-0", wantCode: types.ErrInvalidEnvironmentVariables},
		{name: "ADD unsupported version", command: "ADD", version: "0.3.1", daemon: daemonOK,
			extra: map[string]string{}, wantCode: types.ErrIncompatibleCNIVersion},

		{name: "CHECK", command: "CHECK", version: "1.0.0", daemon: daemonOK,
			wantCall: &fakeCall{cniwire.PathCheck, podReq(podIPs...)}},
		{name: "CHECK not programmed", command: "CHECK", version: "1.1.0",
			daemon:   daemonSpec{status: http.StatusConflict, answer: `{"error": "198.18.0.10 is not programmed"}`},
			wantCode: cniplugin.ErrNotProgrammed, wantCall: &fakeCall{cniwire.PathCheck, podReq(podIPs...)}},
		{name: "CHECK daemon down", command: "CHECK", version: "1.0.0", daemon: daemonDown, wantCode: types.ErrTryAgainLater},
		{name: "CHECK without prevResult", command: "CHECK", version: "1.0.0", daemon: daemonOK, extra: map[string]string{},
			wantCode: types.ErrInvalidNetworkConfig},
		{name: "CHECK CNI_ARGS malformed", command: "CHECK", version: "1.0.0", daemon: daemonOK,
			cniArgs: "a=b=c", wantCode: types.ErrInvalidEnvironmentVariables},

		{name: "DEL", command: "DEL", version: "1.0.0", daemon: daemonOK,
			wantCall: &fakeCall{cniwire.PathDel, podReq(podIPs...)}},
		{name: "DEL without prevResult releases all the pod's", command: "DEL", version: "1.0.0", daemon: daemonOK,
			extra: map[string]string{}, wantCall: &fakeCall{cniwire.PathDel, podReq()}},
		{name: "DEL daemon down", command: "DEL", version: "1.0.0", daemon: daemonDown,
			wantStderr: "not reachable"},
		{name: "DEL daemon 503", command: "DEL", version: "1.0.0", daemon: daemonRetry,
			wantCall: &fakeCall{cniwire.PathDel, podReq(podIPs...)}, wantStderr: "cannot do it now"},
		{name: "DEL CNI_ARGS malformed", command: "DEL", version: "1.0.0", daemon: daemonOK,
			cniArgs: "K8S_POD_NAME", wantStderr: "nothing to release"},
		{name: "DEL malformed stdin", command: "DEL", stdin: `{"cniVersion"`, daemon: daemonOK,
			wantCode: types.ErrDecodingFailure},

		{name: "STATUS", command: "STATUS", version: "1.1.0", extra: map[string]string{}, daemon: daemonOK},
		{name: "STATUS daemon down", command: "STATUS", version: "1.1.0", extra: map[string]string{}, daemon: daemonDown,
			wantCode: types.ErrPluginNotAvailable},
		{name: "STATUS before 1.1.0", command: "STATUS", version: "1.0.0", extra: map[string]string{}, daemon: daemonOK,
			wantCode: types.ErrIncompatibleCNIVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d *fakeDaemon
			socket := filepath.Join(shortTempDir(t), "absent.sock")
			if !tt.daemon.down {
				d = startFakeDaemon(t, tt.daemon.status, tt.daemon.answer, tt.daemon.delay)
				socket = d.socket
			}
			extra := tt.extra
			if extra == nil {
				extra = withPrev(tt.version)
			}
			stdin := []byte(tt.stdin)
			if tt.stdin == "" {
				stdin = netConf(tt.version, socket, extra)
			}
			cniArgs := tt.cniArgs
			switch cniArgs {
			case "":
				cniArgs = podArgs
			case "-":
				cniArgs = ""
			}
			run := runPlugin(t, tt.command, cniArgs, stdin)
			if got := run.errorCode(t); got != tt.wantCode {
				t.Fatalf("error code %d, want %d; stdout %s, stderr %s", got, tt.wantCode, run.stdout, run.stderr)
			}
			if tt.passThrough {
				if diff := cmp.Diff(jsonValue(t, extra["prevResult"]), jsonValue(t, run.stdout)); diff != "" {
					t.Errorf("ADD's result is not prevResult (-prev +result):\n%s", diff)
				}
			} else if tt.wantCode == 0 && run.stdout != "" {
				t.Errorf("%s printed %q, want nothing", tt.command, run.stdout)
			}
			if !strings.Contains(run.stderr, tt.wantStderr) {
				t.Errorf("stderr %q, want it to say %q", run.stderr, tt.wantStderr)
			}
			if d == nil {
				return
			}
			var want []fakeCall
			if tt.wantCall != nil {
				want = []fakeCall{*tt.wantCall}
			}
			if diff := cmp.Diff(want, d.calls(), cmpAddrs); diff != "" {
				t.Errorf("daemon calls (-want +got):\n%s", diff)
			}
		})
	}
}

var cmpAddrs = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestPluginVersion(t *testing.T) {
	run := runPlugin(t, "VERSION", "", nil)
	if run.exitCode != 0 {
		t.Fatalf("VERSION failed: %s", run.stdout)
	}
	want := jsonValue(t, `{"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}`)
	if diff := cmp.Diff(want, jsonValue(t, run.stdout)); diff != "" {
		t.Errorf("VERSION (-want +got):\n%s", diff)
	}
}

// TestPluginDelIdempotent: the runtime may repeat DEL (and does, after a
// failed teardown); every one succeeds and each is passed on.
func TestPluginDelIdempotent(t *testing.T) {
	d := startFakeDaemon(t, http.StatusOK, `{}`, 0)
	stdin := netConf("1.0.0", d.socket, withPrev("1.0.0"))
	for i := range 3 {
		if code := runPlugin(t, "DEL", podArgs, stdin).errorCode(t); code != 0 {
			t.Fatalf("DEL #%d: code %d", i+1, code)
		}
	}
	if n := len(d.calls()); n != 3 {
		t.Errorf("the daemon got %d DELs, want 3", n)
	}
}

// TestPluginTimeout: a daemon that does not answer in time fails ADD with
// "try again later" once the configured timeout has passed, not when the
// daemon finally answers; a daemon that is down fails it at once. Both
// bounds are the configuration's, not a speed requirement.
func TestPluginTimeout(t *testing.T) {
	slow := startFakeDaemon(t, http.StatusOK, `{}`, time.Minute)
	tests := []struct {
		name      string
		socket    string
		timeout   string
		atLeast   time.Duration
		lessThan  time.Duration
		wantCalls int
	}{
		{name: "daemon slower than the timeout", socket: slow.socket, timeout: "300ms", atLeast: 300 * time.Millisecond, lessThan: time.Minute, wantCalls: 1},
		{name: "daemon down", socket: filepath.Join(shortTempDir(t), "absent.sock"), timeout: "1h", lessThan: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(slow.calls())
			extra := withPrev("1.0.0")
			extra["timeout"] = `"` + tt.timeout + `"`
			run := runPlugin(t, "ADD", podArgs, netConf("1.0.0", tt.socket, extra))
			if code := run.errorCode(t); code != types.ErrTryAgainLater {
				t.Fatalf("code %d, want %d: %s", code, types.ErrTryAgainLater, run.stdout)
			}
			if run.elapsed < tt.atLeast || run.elapsed >= tt.lessThan {
				t.Errorf("ADD failed after %v, want within [%v, %v)", run.elapsed, tt.atLeast, tt.lessThan)
			}
			if got := len(slow.calls()) - before; got != tt.wantCalls {
				t.Errorf("%d calls reached the daemon, want %d", got, tt.wantCalls)
			}
		})
	}
}
