package cniconf

// The golden tests install into and uninstall from copies of the
// configuration directories in testdata/<case>/before and compare the whole
// directory, rendered as text (every file's name and content), with
// testdata/<case>/installed.golden and uninstalled.golden. The addresses in
// the configurations are from 198.18.0.0/15 and 2001:db8::/32.

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nftwarden/nftwarden/nft/nfttest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var testEntry = Entry{Socket: "/run/nftwarden/cni.sock", Timeout: 10 * time.Second}

// renderDir is a directory's files, sorted by name, as reviewable text.
func renderDir(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("=== " + e.Name() + " ===\n")
		b.Write(data)
	}
	return b.String()
}

// copyDir copies the files of src into a new temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// fakePlugin is a stand-in for the plugin binary (only copied, never run).
func fakePlugin(t *testing.T) (path, content string) {
	t.Helper()
	content = "#!/bin/false\nnftwarden-cni " + t.Name() + "\n"
	path = filepath.Join(t.TempDir(), "nftwarden-cni-build")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, content
}

func TestInstallUninstallGolden(t *testing.T) {
	tests := []struct {
		name string
		// wantFile is the configuration Install writes.
		wantFile string
		// restores: Uninstall gives the directory back byte for byte.
		restores bool
	}{
		{name: "conflist", wantFile: "10-ptp.conflist", restores: true},
		{name: "conf", wantFile: "10-bridge.conflist", restores: true},
		{name: "json", wantFile: "05-custom.conflist", restores: true},
		// Installed before (an older entry, not last): replaced in place,
		// and the backup taken then is what Uninstall restores.
		{name: "already-installed", wantFile: "10-flannel.conflist"},
		// Added by hand, without a backup: Uninstall rewrites the file
		// without our entry.
		{name: "by-hand", wantFile: "10-calico.conflist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := filepath.Join("testdata", tt.name, "before")
			confDir, binDir := copyDir(t, before), t.TempDir()
			plugin, content := fakePlugin(t)

			for round := range 2 { // the second install finds it done
				got, err := Install(confDir, binDir, plugin, testEntry)
				if err != nil {
					t.Fatalf("install #%d: %v", round+1, err)
				}
				if got != filepath.Join(confDir, tt.wantFile) {
					t.Errorf("install #%d wrote %s, want %s", round+1, got, tt.wantFile)
				}
				installed := renderDir(t, confDir)
				want := nfttest.Golden(t, filepath.Join("testdata", tt.name, "installed.golden"), installed, *update && round == 0)
				if diff := cmp.Diff(want, installed); diff != "" {
					t.Fatalf("after install #%d (-want +got):\n%s", round+1, diff)
				}
			}
			bin, err := os.ReadFile(filepath.Join(binDir, PluginType))
			if err != nil || string(bin) != content {
				t.Fatalf("plugin binary %q (%v), want a copy of %q", bin, err, content)
			}
			if st, _ := os.Stat(filepath.Join(binDir, PluginType)); st.Mode().Perm() != 0o755 {
				t.Errorf("plugin binary mode %v, want 0755", st.Mode().Perm())
			}

			if _, err := Uninstall(confDir, binDir); err != nil {
				t.Fatalf("uninstall: %v", err)
			}
			uninstalled := renderDir(t, confDir)
			want := nfttest.Golden(t, filepath.Join("testdata", tt.name, "uninstalled.golden"), uninstalled, *update)
			if diff := cmp.Diff(want, uninstalled); diff != "" {
				t.Errorf("after uninstall (-want +got):\n%s", diff)
			}
			if tt.restores {
				if diff := cmp.Diff(renderDir(t, before), uninstalled); diff != "" {
					t.Errorf("uninstall did not give the directory back (-before +after):\n%s", diff)
				}
			}
			if _, err := os.Stat(filepath.Join(binDir, PluginType)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("plugin binary left after uninstall (%v)", err)
			}
			if changed, err := Uninstall(confDir, binDir); err != nil || len(changed) != 0 {
				t.Errorf("second uninstall: changed %v, %v; want nothing to do", changed, err)
			}
		})
	}
}
