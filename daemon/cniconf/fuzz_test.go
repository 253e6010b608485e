package cniconf

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzInstallUninstall: whatever the runtime's configuration file holds,
// Install either refuses and leaves the directory as it was, or installs, and
// then Uninstall gives the directory back byte for byte. Nothing panics.
func FuzzInstallUninstall(f *testing.F) {
	for _, seed := range []struct {
		name, content string
	}{
		{"10-x.conflist", `{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "ptp"}]}`},
		{"10-x.conf", `{"cniVersion": "1.0.0", "name": "n", "type": "bridge"}`},
		{"10-x.json", `{"type": "ptp", "name": "n"}`},
		{"10-x.conflist", `{"plugins": []}`},
		{"10-x.conflist", `{"plugins": null, "name": "n"}`},
		{"10-x.conflist", `{"plugins": [{"type": "nftwarden-cni"}, {"type": "ptp"}]}`},
		{"10-x.conf", `{"a": 1, "a": 2, "type": "x"}`},
		{"10-x.conf", ` {"type": "x"} `},
	} {
		f.Add(seed.name, []byte(seed.content))
	}
	plugin := filepath.Join(f.TempDir(), "plugin")
	if err := os.WriteFile(plugin, []byte("plugin"), 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string, content []byte) {
		switch name {
		case "10-x.conflist", "10-x.conf", "10-x.json":
		default:
			name = "10-x.conflist"
		}
		confDir, binDir := t.TempDir(), t.TempDir()
		if err := os.WriteFile(filepath.Join(confDir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
		before := renderDir(t, confDir)
		list, _ := parseConflist(content)
		if _, err := Install(confDir, binDir, plugin, testEntry); err != nil {
			if after := renderDir(t, confDir); after != before {
				t.Fatalf("failed install (%v) changed the directory:\n%s", err, after)
			}
			return
		}
		if list.hasOurs() {
			return // installed before: there is no original to compare with
		}
		if _, err := Uninstall(confDir, binDir); err != nil {
			t.Fatalf("uninstall: %v", err)
		}
		if after := renderDir(t, confDir); after != before {
			t.Fatalf("uninstall did not give the directory back:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}
