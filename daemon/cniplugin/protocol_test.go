package cniplugin_test

// The protocol tests run the real nftwarden-cni binary, built once for the
// package, as a runtime does: CNI_* in the environment, the configuration on
// stdin, the result or the error on stdout. The daemon is a fake that speaks
// cniwire over a real unix socket.
//
// IP plan: the pod has 198.18.0.10 and 2001:db8::10 on its eth0 (in the
// sandbox); the host end of its veth has 198.18.0.1, which is the node's and
// must not be announced.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/daemon/cniwire"
)

var pluginBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nftwarden-cni-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginBin = filepath.Join(dir, "nftwarden-cni")
	out, err := exec.Command("go", "build", "-o", pluginBin, "github.com/nftwarden/nftwarden/daemon/cmd/nftwarden-cni").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build nftwarden-cni: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// prevResult is the main plugin's result (ptp-like) in CNI 1.0.0/1.1.0 form.
const prevResult = `{
  "cniVersion": "%s",
  "interfaces": [
    {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:01"},
    {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": "/var/run/netns/pod"}
  ],
  "ips": [
    {"interface": 1, "address": "198.18.0.10/24", "gateway": "198.18.0.1"},
    {"interface": 1, "address": "2001:db8::10/64", "gateway": "2001:db8::1"},
    {"interface": 0, "address": "198.18.0.1/32"}
  ],
  "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}, {"dst": "::/0"}],
  "dns": {"nameservers": ["198.18.0.53"], "search": ["default.svc.cluster.local"]}
}`

// prevResult040 is the same in CNI 0.4.0 form (ips carry a version).
const prevResult040 = `{
  "cniVersion": "0.4.0",
  "interfaces": [
    {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:01"},
    {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": "/var/run/netns/pod"}
  ],
  "ips": [
    {"version": "4", "interface": 1, "address": "198.18.0.10/24", "gateway": "198.18.0.1"},
    {"version": "6", "interface": 1, "address": "2001:db8::10/64", "gateway": "2001:db8::1"}
  ],
  "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}],
  "dns": {"nameservers": ["198.18.0.53"]}
}`

var podIPs = []netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("2001:db8::10")}

const podArgs = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=0b7c1b2e-1111-4a4a-9999-000000000001"

// netConf is the plugin's stdin: cniVersion, socket and the extra keys
// (prevResult, timeout) given as raw JSON.
func netConf(version, socket string, extra map[string]string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"cniVersion": %q, "name": "k8s-pod-network", "type": "nftwarden-cni", "socket": %q`, version, socket)
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		fmt.Fprintf(&b, ", %q: %s", k, extra[k])
	}
	b.WriteString("}")
	return []byte(b.String())
}

func withPrev(version string) map[string]string {
	if version == "0.4.0" {
		return map[string]string{"prevResult": prevResult040}
	}
	return map[string]string{"prevResult": fmt.Sprintf(prevResult, version)}
}

// fakeDaemon answers cniwire requests on a unix socket with status and
// answer, after delay; it records what it was asked.
type fakeDaemon struct {
	socket string
	mu     sync.Mutex
	status int
	answer string
	delay  time.Duration
	got    []fakeCall
}

type fakeCall struct {
	Path string
	Req  cniwire.Request
}

// shortTempDir is a temporary directory with a short path: a unix socket's
// path is limited to 108 bytes, and t.TempDir's carry the test's name.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nwcni")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startFakeDaemon(t testing.TB, status int, answer string, delay time.Duration) *fakeDaemon {
	t.Helper()
	d := &fakeDaemon{socket: filepath.Join(shortTempDir(t), "cni.sock"), status: status, answer: answer, delay: delay}
	l, err := net.Listen("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(d.serve))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return d
}

func (d *fakeDaemon) serve(w http.ResponseWriter, r *http.Request) {
	var req cniwire.Request
	if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&req) != nil {
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
		return
	}
	d.mu.Lock()
	d.got = append(d.got, fakeCall{Path: r.URL.Path, Req: req})
	status, answer, delay := d.status, d.answer, d.delay
	d.mu.Unlock()
	select {
	case <-time.After(delay):
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprint(w, answer)
}

func (d *fakeDaemon) calls() []fakeCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.got)
}

// pluginRun is one run of the binary.
type pluginRun struct {
	exitCode       int
	stdout, stderr string
	elapsed        time.Duration
}

// cniError is the spec's error object on stdout.
type cniError struct {
	Code uint   `json:"code"`
	Msg  string `json:"msg"`
}

func runPlugin(t testing.TB, command, cniArgs string, stdin []byte, extraEnv ...string) pluginRun {
	t.Helper()
	cmd := exec.Command(pluginBin)
	cmd.Env = append([]string{
		"CNI_COMMAND=" + command,
		"CNI_CONTAINERID=c0ffee",
		"CNI_NETNS=/var/run/netns/nftwarden-cni-test-absent",
		"CNI_IFNAME=eth0",
		"CNI_PATH=/opt/cni/bin",
		"CNI_ARGS=" + cniArgs,
	}, extraEnv...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	run := pluginRun{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		run.exitCode = exit.ExitCode()
	case err != nil:
		t.Fatalf("run nftwarden-cni: %v", err)
	}
	// A panic exits 2 and says so on stderr; the spec allows 0 or 1 only.
	if run.exitCode > 1 || strings.Contains(run.stderr, "panic") {
		t.Fatalf("%s: exit %d, stderr:\n%s", command, run.exitCode, run.stderr)
	}
	return run
}

// errorCode is the code of the spec error the run printed, or 0 when it
// succeeded (exit 0, no error object).
func (r pluginRun) errorCode(t *testing.T) uint {
	t.Helper()
	if r.exitCode == 0 {
		return 0
	}
	var e cniError
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || e.Code == 0 {
		t.Fatalf("exit %d without a CNI error on stdout (%v): %q", r.exitCode, err, r.stdout)
	}
	return e.Code
}

func jsonValue(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON (%v): %q", err, s)
	}
	return v
}
