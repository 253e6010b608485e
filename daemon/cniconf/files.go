package cniconf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// configExtensions are the files libcni reads from a configuration directory.
var configExtensions = []string{".conf", ".conflist", ".json"}

// backupSuffix marks Install's copy of a file as it found it; runtimes skip
// it (not one of configExtensions).
const backupSuffix = ".nftwarden-backup"

// ErrNoConfig: the directory holds no network configuration yet (the main
// CNI has not written its own); there is nothing to chain after.
var ErrNoConfig = errors.New("no CNI network configuration (*.conf, *.conflist, *.json)")

// configFiles lists the directory's network configuration files in the
// order the runtime considers them (by name).
func configFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("read CNI configuration directory: %w", err)
	}
	var files []string
	for _, e := range entries {
		if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
			if slices.Contains(configExtensions, filepath.Ext(e.Name())) {
				files = append(files, filepath.Join(dir, e.Name()))
			}
		}
	}
	return files, nil
}

// conflistName is where a list read from file is written: a .conflist stays
// where it is, a single configuration becomes a .conflist of the same stem.
func conflistName(file string, single bool) string {
	if !single {
		return file
	}
	return strings.TrimSuffix(file, filepath.Ext(file)) + ".conflist"
}

// writeAtomic replaces path with data: written to a temporary file in the
// same directory (a name no runtime reads), synced, then renamed over it.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".nftwarden-tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// copyAtomic copies src to dst (mode 0755) with writeAtomic's guarantees:
// a runtime that executes dst runs the old binary or the new one, never half.
func copyAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy the plugin binary: %w", err)
	}
	defer in.Close()
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("copy the plugin binary: %w", err)
	}
	return writeAtomic(dst, data, 0o755)
}

// fileMode is the mode of an existing file (to keep it when it is
// replaced), 0644 when it cannot be read.
func fileMode(path string) os.FileMode {
	if st, err := os.Stat(path); err == nil {
		return st.Mode().Perm()
	}
	return 0o644
}

// removeIfExists removes path; a missing one is not an error.
func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}
