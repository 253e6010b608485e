package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// The CNI socket (--cni-socket) is where the chained plugin nftwarden-cni
// asks the daemon to program a pod (package cniwire). Whoever can write to it
// can make the daemon program addresses as a pod's, so only root may: the
// socket is 0600, in a directory created 0700.
const (
	cniSocketMode    fs.FileMode = 0o600
	cniSocketDirMode fs.FileMode = 0o700
)

// cniSocketTmpSuffix names the socket while it is bound, before its mode is
// set and it is renamed into place.
const cniSocketTmpSuffix = ".new"

// maxCNISocketPath is the longest --cni-socket: a unix socket's path has at
// most 107 bytes (sun_path), the temporary name needs a few more.
const maxCNISocketPath = 107 - len(cniSocketTmpSuffix)

// cniDialTimeout bounds the probe of an existing socket: a live daemon
// accepts at once (the kernel queues the connection even while it is busy).
const cniDialTimeout = time.Second

// cniListener is the listening CNI socket. Closing it removes the socket
// file, unless another process has replaced it meanwhile.
type cniListener struct {
	*net.UnixListener
	path string
	file os.FileInfo // the socket file as bound, to recognise it at Close
}

// listenCNISocket listens on the unix socket at path. A socket left there
// by a daemon that is gone (nothing answers) is replaced; one that answers
// is another daemon's, and the start fails, as it does for a path that is
// not a socket. The socket is bound under a temporary name, given mode 0600
// and renamed into place, so that it is never reachable with the default
// mode, even in a directory that others may enter.
func listenCNISocket(path string) (*cniListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, cniSocketDirMode); err != nil {
		return nil, fmt.Errorf("CNI socket: create its directory: %w", err)
	}
	if err := checkStaleSocket(path); err != nil {
		return nil, err
	}
	tmp := path + cniSocketTmpSuffix
	_ = os.Remove(tmp) // left by a crashed start
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("CNI socket: listen on %s: %w", tmp, err)
	}
	// The name changes: the listener must not unlink the old one at Close.
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*cniListener, error) {
		ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("CNI socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, cniSocketMode); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &cniListener{UnixListener: ln, path: path, file: fi}, nil
}

// checkStaleSocket returns nil when path is free or holds a socket nobody
// listens on (removed then), and an error when another process listens on
// it or it is not a socket.
func checkStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("CNI socket: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("CNI socket: %s exists and is not a socket (%s); remove it or choose another --%s", path, fi.Mode().Type(), flagCNISocket)
	}
	c, err := net.DialTimeout("unix", path, cniDialTimeout)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("CNI socket: %s is in use: another nftwarden daemon runs on this node", path)
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("CNI socket: cannot tell whether %s is in use: %w", path, err)
	}
	// Refused: the socket of a daemon that is gone. It is replaced by the
	// rename anyway; removing it now keeps a failed start from leaving it.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("CNI socket: remove the stale socket: %w", err)
	}
	return nil
}

// Close stops listening and removes the socket file if it is still the one
// bound.
func (l *cniListener) Close() error {
	err := l.UnixListener.Close()
	if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.file) {
		_ = os.Remove(l.path)
	}
	return err
}
