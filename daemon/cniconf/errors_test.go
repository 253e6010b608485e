package cniconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstallRefusesAndLeavesAlone: configurations Install cannot extend
// fail it, and the directory stays as it was (no backup, no temporary file).
func TestInstallRefusesAndLeavesAlone(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string
		is      error
	}{
		{name: "no configuration", files: map[string]string{"README": "not a configuration"}, is: ErrNoConfig},
		{name: "not JSON", files: map[string]string{"10-x.conflist": `{"plugins": [`}, wantErr: "10-x.conflist"},
		{name: "not an object", files: map[string]string{"10-x.conf": `["ptp"]`}, wantErr: "not a JSON object"},
		{name: "plugins not a list", files: map[string]string{"10-x.conflist": `{"name": "n", "plugins": {"type": "ptp"}}`}, wantErr: "not a list"},
		{name: "a plugin not an object", files: map[string]string{"10-x.conflist": `{"name": "n", "plugins": ["ptp"]}`}, wantErr: "plugin 0"},
		{name: "a .conf beside the .conflist of its stem", files: map[string]string{
			"10-x.conf": `{"name": "n", "type": "ptp"}`, "10-x.conflist": `{"name": "m", "plugins": [{"type": "bridge"}]}`},
			wantErr: "not ours"},
		{name: "trailing data", files: map[string]string{"10-x.conf": `{"type": "ptp"} {}`}, wantErr: "after the object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			confDir := t.TempDir()
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(confDir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			before := renderDir(t, confDir)
			plugin, _ := fakePlugin(t)
			_, err := Install(confDir, t.TempDir(), plugin, testEntry)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("error %v, want one saying %q (is %v)", err, tt.wantErr, tt.is)
			}
			if after := renderDir(t, confDir); after != before {
				t.Errorf("directory changed by a failed install:\n%s", after)
			}
		})
	}
}

// TestInstallAfterTheCNIRewroteItsFile: the main CNI's installer rewrites
// its conflist (without our entry) after we installed. Install takes a fresh
// backup; and when Uninstall runs without a new install, the rewritten file
// is left alone and the stale backup removed.
func TestInstallAfterTheCNIRewroteItsFile(t *testing.T) {
	confDir, binDir := t.TempDir(), t.TempDir()
	file := filepath.Join(confDir, "10-x.conflist")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	plugin, _ := fakePlugin(t)
	write(`{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "ptp"}]}`)
	if _, err := Install(confDir, binDir, plugin, testEntry); err != nil {
		t.Fatal(err)
	}
	rewritten := `{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "ptp", "mtu": 1400}]}`
	write(rewritten)
	if _, err := Install(confDir, binDir, plugin, testEntry); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(file + backupSuffix); string(b) != rewritten {
		t.Errorf("backup %q, want the rewritten file", b)
	}
	if _, err := Uninstall(confDir, binDir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(file); string(b) != rewritten {
		t.Errorf("after uninstall %q, want %q", b, rewritten)
	}

	// Installed, then rewritten by the CNI without our entry: nothing of
	// ours is left to take out, and the old backup must not come back.
	if _, err := Install(confDir, binDir, plugin, testEntry); err != nil {
		t.Fatal(err)
	}
	newer := `{"cniVersion": "1.1.0", "name": "n", "plugins": [{"type": "ptp", "mtu": 1300}]}`
	write(newer)
	changed, err := Uninstall(confDir, binDir)
	if err != nil || len(changed) != 0 {
		t.Fatalf("uninstall changed %v, %v; want nothing", changed, err)
	}
	if b, _ := os.ReadFile(file); string(b) != newer {
		t.Errorf("after uninstall %q, want the CNI's %q", b, newer)
	}
	if _, err := os.Stat(file + backupSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale backup left (%v)", err)
	}
}

func TestInstallMissingBinary(t *testing.T) {
	confDir := copyDir(t, filepath.Join("testdata", "conflist", "before"))
	before := renderDir(t, confDir)
	if _, err := Install(confDir, t.TempDir(), filepath.Join(t.TempDir(), "absent"), testEntry); err == nil {
		t.Fatal("install without the plugin binary succeeded")
	}
	if renderDir(t, confDir) != before {
		t.Error("the configuration names a plugin whose binary was not installed")
	}
}
