package cniconf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Uninstall takes nftwarden-cni out of every network configuration in
// confDir that holds it (see the package documentation) and removes the
// plugin binary from binDir ("" leaves it: a binary no configuration names is
// never run). It returns the files it rewrote or restored. Nothing to remove
// is not an error.
func Uninstall(confDir, binDir string) ([]string, error) {
	files, err := configFiles(confDir)
	if err != nil {
		return nil, fmt.Errorf("uninstall nftwarden-cni: %w", err)
	}
	var changed []string
	for _, file := range files {
		done, err := uninstallFile(file)
		if err != nil {
			return changed, fmt.Errorf("uninstall nftwarden-cni: %s: %w", file, err)
		}
		if done != "" {
			changed = append(changed, done)
		}
	}
	// Backups whose file no longer holds our entry (the CNI rewrote it)
	// are stale: the file is right as it is.
	backups, err := filepath.Glob(filepath.Join(confDir, "*"+backupSuffix))
	if err != nil {
		return changed, fmt.Errorf("uninstall nftwarden-cni: %w", err)
	}
	for _, b := range backups {
		if err := removeIfExists(b); err != nil {
			return changed, fmt.Errorf("uninstall nftwarden-cni: %w", err)
		}
	}
	if binDir != "" {
		if err := removeIfExists(filepath.Join(binDir, PluginType)); err != nil {
			return changed, fmt.Errorf("uninstall nftwarden-cni: %w", err)
		}
	}
	return changed, nil
}

// uninstallFile takes our entry out of file, if it holds one, and returns
// the file it wrote ("" when it had nothing to do). A file that does not
// parse is not ours to touch.
func uninstallFile(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	list, err := parseConflist(data)
	if err != nil || !list.hasOurs() {
		return "", nil
	}
	rest := list.withoutOurs()
	if orig, backup, ok := matchingBackup(file, rest); ok {
		if err := writeAtomic(orig, backup, fileMode(file)); err != nil {
			return "", err
		}
		if orig != file {
			if err := removeIfExists(file); err != nil {
				return "", err
			}
		}
		return orig, nil
	}
	if len(rest.plugins) == 0 {
		// Only our entry: a list of nothing is no configuration; leave it
		// to whoever wrote it rather than break the directory.
		return "", fmt.Errorf("it holds no plugin besides nftwarden-cni and no backup to restore")
	}
	out, err := rest.marshal()
	if err != nil {
		return "", err
	}
	if err := writeAtomic(file, out, fileMode(file)); err != nil {
		return "", err
	}
	return file, nil
}

// matchingBackup finds Install's backup of file (of the file itself, or of
// the .conf/.json it was converted from) whose content is rest: the
// configuration as it was before Install. It returns the backup's original
// name and bytes.
func matchingBackup(file string, rest *conflist) (string, []byte, bool) {
	stem := strings.TrimSuffix(file, filepath.Ext(file))
	candidates := []string{file}
	for _, ext := range configExtensions {
		if c := stem + ext; c != file {
			candidates = append(candidates, c)
		}
	}
	for _, orig := range candidates {
		backup, err := os.ReadFile(orig + backupSuffix)
		if err != nil {
			continue
		}
		was, err := parseConflist(backup)
		if err != nil {
			continue
		}
		if was.sameAs(rest) {
			return orig, backup, true
		}
	}
	return "", nil, false
}
