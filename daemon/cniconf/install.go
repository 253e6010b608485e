package cniconf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Entry is nftwarden-cni's plugin configuration in the conflist; zero
// fields are left out (the plugin's defaults apply).
type Entry struct {
	// Socket is the daemon's unix socket ("socket").
	Socket string
	// Timeout bounds each call to the daemon ("timeout").
	Timeout time.Duration
}

// json is the entry as it stands in the conflist.
func (e Entry) json() (json.RawMessage, error) {
	v := struct {
		Type    string `json:"type"`
		Socket  string `json:"socket,omitempty"`
		Timeout string `json:"timeout,omitempty"`
	}{Type: PluginType, Socket: e.Socket}
	if e.Timeout < 0 {
		return nil, fmt.Errorf("timeout %v: must not be negative", e.Timeout)
	}
	if e.Timeout > 0 {
		v.Timeout = e.Timeout.String()
	}
	return json.Marshal(v)
}

// Install copies the plugin binary pluginBinary into binDir as
// nftwarden-cni, then makes entry the last plugin of the runtime's network
// configuration in confDir (see the package documentation). It returns the
// file it wrote (or found already right). ErrNoConfig when confDir holds no
// configuration: the main CNI has not installed its own yet.
func Install(confDir, binDir, pluginBinary string, entry Entry) (string, error) {
	ours, err := entry.json()
	if err != nil {
		return "", fmt.Errorf("install nftwarden-cni: %w", err)
	}
	if err := copyAtomic(pluginBinary, filepath.Join(binDir, PluginType)); err != nil {
		return "", fmt.Errorf("install nftwarden-cni: %w", err)
	}
	files, err := configFiles(confDir)
	if err != nil {
		return "", fmt.Errorf("install nftwarden-cni: %w", err)
	}
	if len(files) == 0 {
		return "", fmt.Errorf("install nftwarden-cni: %s: %w", confDir, ErrNoConfig)
	}
	file := files[0]
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("install nftwarden-cni: %w", err)
	}
	list, err := parseConflist(data)
	if err != nil {
		return "", fmt.Errorf("install nftwarden-cni: %s: %w", file, err)
	}
	next := list.withoutOurs()
	next.plugins = append(next.plugins, ours)
	out, err := next.marshal()
	if err != nil {
		return "", fmt.Errorf("install nftwarden-cni: %s: %w", file, err)
	}
	target := conflistName(file, list.single)
	if target == file && bytes.Equal(out, data) {
		return file, nil // installed already, exactly so
	}
	if target != file {
		if _, err := os.Lstat(target); err == nil {
			return "", fmt.Errorf("install nftwarden-cni: converting %s would replace %s, which is not ours", file, target)
		}
	}
	// The backup is the file as the main CNI wrote it: taken when our entry
	// is not in it (the first install, or the CNI rewrote its file since).
	if !list.hasOurs() {
		if err := writeAtomic(file+backupSuffix, data, fileMode(file)); err != nil {
			return "", fmt.Errorf("install nftwarden-cni: back up %s: %w", file, err)
		}
	}
	if err := writeAtomic(target, out, fileMode(file)); err != nil {
		return "", fmt.Errorf("install nftwarden-cni: %w", err)
	}
	// The .conf sorts before the .conflist of its stem, so the runtime kept
	// using it until now; without it the runtime reads the .conflist.
	if target != file {
		if err := removeIfExists(file); err != nil {
			return "", fmt.Errorf("install nftwarden-cni: %w", err)
		}
	}
	return target, nil
}
