package cluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// DaemonUser is the user name that the daemon's kubeconfig authenticates as. It looks
// like the service account of daemon/deploy/rbac.yaml; it has no permissions until a
// test (or the daemon's RBAC manifests) grant some.
const DaemonUser = "system:serviceaccount:nftwarden:nftwarden"

// ControlPlane is a running etcd and kube-apiserver. Create it with StartControlPlane
// and end it with Stop.
type ControlPlane struct {
	// Dir holds everything of this control plane (data, certificates, tokens, logs,
	// kubeconfigs); Stop removes it.
	Dir string
	// Host is the API server's URL, https://127.0.0.1:<port>.
	Host string
	// Port is the API server's port. Node relays listen on 127.0.0.1:Port inside each
	// node namespace, so the same kubeconfig works there.
	Port int
	// AdminKubeconfig authenticates as a member of system:masters.
	AdminKubeconfig string
	// DaemonKubeconfig authenticates as DaemonUser (no permissions by default).
	DaemonKubeconfig string
	// Config and Client are the admin's.
	Config *rest.Config
	Client kubernetes.Interface
	// DaemonConfig authenticates as DaemonUser.
	DaemonConfig *rest.Config

	etcd, apiserver *process
	// etcdArgv and apiserverArgv start the two processes again after StopAPIServer,
	// with the same ports, data, certificates and tokens.
	etcdArgv, apiserverArgv []string
	readyTimeout            time.Duration
	rbacOnce                func() error
	unreg                   func()
}

// ControlPlaneOptions configures StartControlPlane.
type ControlPlaneOptions struct {
	// BinDir holds etcd and kube-apiserver; empty means BinDir().
	BinDir string
	// ReadyTimeout bounds the wait for /readyz (default 90 s: the first start on a busy
	// 2-core machine is slow).
	ReadyTimeout time.Duration
	// EtcdArgs and APIServerArgs are appended to the flags the harness gives etcd and
	// kube-apiserver (a later flag wins), e.g. --quota-backend-bytes for a benchmark
	// that stores many objects.
	EtcdArgs, APIServerArgs []string
	// LimitCriticalPods admits pods like a managed cluster (GKE) does: the
	// ResourceQuota admission plugin limits pods whose PriorityClass is
	// system-node-critical or system-cluster-critical, so that outside kube-system such
	// a pod is admitted only in a namespace with a ResourceQuota whose scopeSelector
	// matches its class (see admission.go).
	LimitCriticalPods bool
}

// StartControlPlane starts etcd and kube-apiserver on random free ports of 127.0.0.1
// with fresh certificates, keys, tokens and data, and waits until the API server is
// ready. On error nothing is left behind.
func StartControlPlane(ctx context.Context, opts ControlPlaneOptions) (_ *ControlPlane, err error) {
	bin := opts.BinDir
	if bin == "" {
		if bin, err = BinDir(); err != nil {
			return nil, err
		}
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 90 * time.Second
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("control plane binary %s missing (run scripts/build-control-plane.sh): %w", b, err)
		}
	}
	dir, err := os.MkdirTemp("", namePrefix()+"cp-")
	if err != nil {
		return nil, fmt.Errorf("control plane dir: %w", err)
	}
	cp := &ControlPlane{Dir: dir}
	cp.unreg = defaultJanitor.register(cp.stop)
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()

	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdPort, peerPort, apiPort := ports[0], ports[1], ports[2]
	cp.Port = apiPort
	cp.Host = "https://127.0.0.1:" + strconv.Itoa(apiPort)

	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	cp.etcdArgv = append([]string{
		filepath.Join(bin, "etcd"),
		"--name=nftw-it",
		"--data-dir=" + filepath.Join(dir, "etcd-data"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=http://127.0.0.1:" + strconv.Itoa(peerPort),
		"--initial-advertise-peer-urls=http://127.0.0.1:" + strconv.Itoa(peerPort),
		"--initial-cluster=nftw-it=http://127.0.0.1:" + strconv.Itoa(peerPort),
		"--log-level=warn",
		// Tests are short-lived: no need to sync every write to disk.
		"--unsafe-no-fsync",
	}, opts.EtcdArgs...)

	saKey := filepath.Join(dir, "sa.key")
	if err := writeRSAKey(saKey); err != nil {
		return nil, err
	}
	adminToken, err := randomToken()
	if err != nil {
		return nil, err
	}
	daemonToken, err := randomToken()
	if err != nil {
		return nil, err
	}
	tokens := fmt.Sprintf("%s,admin,admin,system:masters\n%s,%s,nftwarden,\"system:serviceaccounts,system:serviceaccounts:nftwarden\"\n",
		adminToken, daemonToken, DaemonUser)
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(tokens), 0o600); err != nil {
		return nil, fmt.Errorf("write tokens: %w", err)
	}
	// The API server generates its serving certificate into certDir on its first start
	// and reuses it on the next (StartAPIServer), so clients keep trusting it.
	certDir := filepath.Join(dir, "certs")
	cp.apiserverArgv = []string{
		filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers=" + etcdURL,
		"--secure-port=" + strconv.Itoa(apiPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--cert-dir=" + certDir,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=198.19.0.0/16",
		"--endpoint-reconciler-type=none",
		"--v=1",
	}
	if opts.LimitCriticalPods {
		path := filepath.Join(dir, "admission.yaml")
		if err := os.WriteFile(path, []byte(criticalPodsAdmission), 0o600); err != nil {
			return nil, fmt.Errorf("write admission configuration: %w", err)
		}
		cp.apiserverArgv = append(cp.apiserverArgv, "--admission-control-config-file="+path)
	}
	cp.apiserverArgv = append(cp.apiserverArgv, opts.APIServerArgs...)
	cp.readyTimeout = opts.ReadyTimeout
	if err := cp.startServers(ctx, adminToken); err != nil {
		return nil, err
	}
	caData, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		return nil, fmt.Errorf("read generated serving certificate: %w", err)
	}
	// A high rate limit, and protobuf, which costs the API server less than JSON:
	// tests create thousands of API-only pods with a few workers, at 100 per second.
	cp.Config = &rest.Config{Host: cp.Host, BearerToken: adminToken, TLSClientConfig: rest.TLSClientConfig{CAData: caData},
		QPS: 2000, Burst: 4000, ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf"}}
	cp.DaemonConfig = &rest.Config{Host: cp.Host, BearerToken: daemonToken, TLSClientConfig: rest.TLSClientConfig{CAData: caData}}
	if cp.Client, err = kubernetes.NewForConfig(cp.Config); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	cp.AdminKubeconfig = filepath.Join(dir, "admin.kubeconfig")
	cp.DaemonKubeconfig = filepath.Join(dir, "nftwarden.kubeconfig")
	if err := writeKubeconfig(cp.AdminKubeconfig, cp.Host, caData, "admin", adminToken); err != nil {
		return nil, err
	}
	if err := writeKubeconfig(cp.DaemonKubeconfig, cp.Host, caData, "nftwarden", daemonToken); err != nil {
		return nil, err
	}
	cp.rbacOnce = sync.OnceValue(func() error { return cp.applyDaemonRBAC(context.Background()) })
	return cp, nil
}

// startServers starts etcd, then kube-apiserver, and waits until the API server is
// ready, authenticating the readiness poll with token.
func (cp *ControlPlane) startServers(ctx context.Context, token string) error {
	var err error
	if cp.etcd, err = startProcess("etcd", filepath.Join(cp.Dir, "etcd.log"), cp.etcdArgv, os.Environ()); err != nil {
		return err
	}
	if cp.apiserver, err = startProcess("kube-apiserver", filepath.Join(cp.Dir, "kube-apiserver.log"), cp.apiserverArgv, os.Environ()); err != nil {
		return err
	}
	return cp.waitReady(ctx, token, cp.readyTimeout)
}

// waitReady polls /readyz until it answers 200, a process dies, or the bound passes.
func (cp *ControlPlane) waitReady(ctx context.Context, token string, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	// The certificate is generated by the API server when it starts; readiness is only
	// a poll, so it does not need to verify it (the clients built afterwards do).
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer hc.CloseIdleConnections()
	var last string
	for {
		for _, p := range []*process{cp.etcd, cp.apiserver} {
			if err := p.exitError(); err != nil {
				return err
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, cp.Host+"/readyz", nil)
		if err != nil {
			return fmt.Errorf("readyz request: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready after %s (last answer: %s); last lines of its log:\n%s",
				bound, last, cp.apiserver.tail(30))
		// A short period: StartAPIServer's return is when an outage is over.
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Logs returns the last lines of the etcd and kube-apiserver logs, for failure reports.
func (cp *ControlPlane) Logs() string {
	var s string
	if cp.etcd != nil {
		s += "--- etcd (" + cp.etcd.logPath + ")\n" + cp.etcd.tail(20) + "\n"
	}
	if cp.apiserver != nil {
		s += "--- kube-apiserver (" + cp.apiserver.logPath + ")\n" + cp.apiserver.tail(20) + "\n"
	}
	return s
}

// Stop ends both processes and removes Dir. Safe to call more than once.
func (cp *ControlPlane) Stop() {
	cp.unreg()
}

func (cp *ControlPlane) stop() {
	// API server first: it would otherwise log etcd connection errors until it ends.
	if cp.apiserver != nil {
		cp.apiserver.stop(5 * time.Second)
	}
	if cp.etcd != nil {
		cp.etcd.stop(5 * time.Second)
	}
	_ = os.RemoveAll(cp.Dir)
}

// freePorts returns n distinct TCP ports that were free a moment ago. Listening on them
// all at once keeps the kernel from handing out the same one twice.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func writeRSAKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate service account key: %w", err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write service account key: %w", err)
	}
	return nil
}

func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func writeKubeconfig(path, host string, caData []byte, user, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["nftw-it"] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: caData}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["nftw-it"] = &clientcmdapi.Context{Cluster: "nftw-it", AuthInfo: user}
	cfg.CurrentContext = "nftw-it"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}
