package daemon

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time:
//
//	go build -ldflags "-X github.com/nftwarden/nftwarden/daemon.version=v0.1.0" ./daemon/cmd/nftwarden
//
// When empty, the module version from the build info is used.
var version = ""

// buildVersion is the version to report: -ldflags first, then the main
// module's version (set by `go install module@version`), then the VCS revision
// that `go build` stamps into the binary.
func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	if v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		return "devel-" + rev + dirty
	}
	return "devel"
}

// versionLine is what `nftwarden version` prints.
func versionLine() string {
	return fmt.Sprintf("nftwarden %s (%s, %s/%s)", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
