package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

const rootModule = "github.com/nftwarden/nftwarden"

// RepoRoot finds the nftwarden repository: NFTW_REPO if set, else the nearest directory
// above the working directory whose go.mod declares the root module.
func RepoRoot() (string, error) {
	if d := os.Getenv("NFTW_REPO"); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if isRootModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the nftwarden repository above the working directory (set NFTW_REPO)")
		}
		dir = parent
	}
}

func isRootModule(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module ")) == rootModule
		}
	}
	return false
}

// BinDir is where scripts/build-control-plane.sh puts etcd and kube-apiserver and where
// the podagent and nftwarden binaries are built: NFTW_CACHE, or <repo>/.cache/bin.
func BinDir() (string, error) {
	if d := os.Getenv("NFTW_CACHE"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "bin"), nil
}

var buildMu sync.Mutex

// BuildPodAgent builds integration/cmd/podagent into BinDir and returns its path.
func BuildPodAgent() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return goBuild(filepath.Join(root, "integration"), "./cmd/podagent", "podagent")
}

// BuildDaemon builds the nftwarden command (./daemon/cmd/nftwarden of the root
// module) into BinDir and returns its path.
func BuildDaemon() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return goBuild(root, "./daemon/cmd/nftwarden", "nftwarden")
}

func goBuild(moduleDir, pkg, name string) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	bin, err := BinDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", bin, err)
	}
	out := filepath.Join(bin, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = moduleDir
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s in %s: %w\n%s", pkg, moduleDir, err, b)
	}
	return out, nil
}

// namePrefix is the prefix of every namespace and temporary directory this process
// creates: "nftw-it-<pid>-". The PID lets RemoveStale recognise leftovers of processes
// that are gone, and leave those of concurrent runs alone.
func namePrefix() string {
	return "nftw-it-" + strconv.Itoa(os.Getpid()) + "-"
}

// RemoveStale deletes the network namespaces and temporary directories named
// nftw-it-<pid>-* whose process no longer exists (left behind by a run that was killed
// with SIGKILL). It returns the network namespaces it removed.
func RemoveStale() ([]string, error) {
	var removed []string
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	for _, e := range entries {
		if !staleName(e.Name()) {
			continue
		}
		if err := deleteNetns(e.Name()); err != nil {
			return removed, err
		}
		removed = append(removed, e.Name())
	}
	tmp, err := os.ReadDir(os.TempDir())
	if err != nil {
		return removed, fmt.Errorf("list %s: %w", os.TempDir(), err)
	}
	for _, e := range tmp {
		if e.IsDir() && staleName(e.Name()) {
			_ = os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
		}
	}
	return removed, nil
}

// staleName reports whether name is nftw-it-<pid>-... of a process that is gone.
func staleName(name string) bool {
	rest, ok := strings.CutPrefix(name, "nftw-it-")
	if !ok {
		return false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return false
	}
	pid, err := strconv.Atoi(pidStr)
	return err == nil && pid != os.Getpid() && !processAlive(pid)
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
