// Package cniconf puts nftwarden-cni into the node's CNI configuration and
// takes it out again: `nftwarden cni install|uninstall`, the DaemonSet's init
// container, and the daemon when its DaemonSet is deleted.
//
// The runtime (containerd, CRI-O, through libcni) uses the lexicographically
// first *.conf, *.conflist or *.json file of its configuration directory.
// Install appends {"type": "nftwarden-cni", ...} as the last plugin of that
// file, so that it runs after the plugins that create the pod's interface and
// assign its addresses; a single-plugin .conf (or .json) becomes a .conflist
// of the same stem, built as libcni builds one from a .conf. Every file is
// replaced atomically (written beside it, then renamed), so a runtime never
// reads half a file, and Install is idempotent: run again with the same
// entry it writes nothing, with another entry it replaces ours.
//
// Install keeps the file as it found it in <name>.nftwarden-backup (an
// extension runtimes ignore). Uninstall takes our entry out of every file
// that holds it: when the rest is still what the backup holds it puts the
// backup back byte for byte (under its own name: a converted .conf returns),
// otherwise (the main CNI rewrote its file since) it rewrites the file
// without our entry. A file someone rewrote without our entry is left alone.
//
// The package must not touch files other than the conflist it edits, its
// backups, its temporary files and the plugin binary, and never leaves a
// configuration directory without a usable network configuration.
package cniconf
