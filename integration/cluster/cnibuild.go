package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// The CNI plugins of the chains AddCNIPod runs. The reference plugins are built from
// the version of github.com/containernetworking/plugins that integration/go.mod pins
// (its `tool` directive), so that go.sum vouches for them; nftwarden-cni is built from
// this repository like the daemon.
var referencePlugins = []string{
	"github.com/containernetworking/plugins/plugins/main/ptp",
	"github.com/containernetworking/plugins/plugins/main/bridge",
	"github.com/containernetworking/plugins/plugins/ipam/host-local",
}

// nftwardenCNIPackage is the chained plugin's main package in the root module.
const nftwardenCNIPackage = "./daemon/cmd/nftwarden-cni"

// CNIBinDir is where the CNI plugins are built: <BinDir>/cni, the directory a
// runtime's CNI bin dir (/opt/cni/bin) stands for.
func CNIBinDir() (string, error) {
	bin, err := BinDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(bin, "cni"), nil
}

var referencePluginsOnce = sync.OnceValues(BuildReferencePlugins)

// BuildReferencePlugins builds ptp, bridge and host-local into CNIBinDir and returns
// the directory.
func BuildReferencePlugins() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return buildInto(filepath.Join(root, "integration"), referencePlugins...)
}

var nftwardenCNIOnce = sync.OnceValues(BuildNFTWardenCNI)

// BuildNFTWardenCNI builds the chained plugin nftwarden-cni into CNIBinDir and returns
// the directory. NFTW_CNI_PLUGIN names a prebuilt binary instead (it is copied there,
// as the DaemonSet's init container copies it to the node).
func BuildNFTWardenCNI() (string, error) {
	dir, err := CNIBinDir()
	if err != nil {
		return "", err
	}
	if src := os.Getenv("NFTW_CNI_PLUGIN"); src != "" {
		return dir, copyExecutable(src, filepath.Join(dir, "nftwarden-cni"))
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return buildInto(root, nftwardenCNIPackage)
}

// buildInto runs `go build -o CNIBinDir/ pkgs...` in moduleDir: each main package
// becomes a binary named after its last path element, the plugin type a conflist
// names.
func buildInto(moduleDir string, pkgs ...string) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	dir, err := CNIBinDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	cmd := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	cmd.Dir = moduleDir
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %v in %s: %w\n%s", pkgs, moduleDir, err, b)
	}
	return dir, nil
}

// copyExecutable copies src to dst (mode 0755) through a temporary file and a rename,
// so that a plugin being executed is never seen half written.
func copyExecutable(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read plugin %s: %w", src, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dst), err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	return nil
}
