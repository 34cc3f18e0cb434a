// Package buildinfo says which build of the worker is running: its version
// (stamped at link time, else by the go command) and how it was built.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set at link time: go build -ldflags "-X github.com/sqsworker/sqsworker/internal/buildinfo.version=v1.2.3
// -X github.com/sqsworker/sqsworker/internal/buildinfo.revision=abc123 …". The Makefile sets revision,
// revisionTime and modified from git (the go command stamps them itself only when -buildvcs is on,
// and GOFLAGS may turn it off); the image build sets version and revision from build arguments,
// since it builds without the .git directory. A link-time revision wins over the go command's, and
// brings its own time and modified flag.
var (
	version      string
	revision     string
	revisionTime string
	modified     string // "true" when the work tree had uncommitted changes
)

// Info describes the running binary.
type Info struct {
	// Version is the link-time version, else the module version the go
	// command stamped (a tag, or a pseudo-version of the commit), else
	// "devel".
	Version string `json:"version"`
	// Revision and Time are the commit built and its time; Modified says
	// the work tree had uncommitted changes. Empty when unknown.
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	// GoVersion, OS and Arch are the toolchain and platform.
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	// Module is the main module's path.
	Module string `json:"module,omitempty"`
	// Settings are the non-empty build settings that say how the binary
	// was built (CGO_ENABLED, -trimpath, -ldflags, GOAMD64, …), in the go
	// command's order.
	Settings []Setting `json:"settings,omitempty"`
}

// Setting is one build setting.
type Setting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Read reads the running binary's build information.
func Read() Info {
	info := Info{Version: version, Revision: revision, Time: revisionTime, Modified: modified == "true",
		GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	linked := revision != ""
	bi, ok := debug.ReadBuildInfo()
	if ok {
		info.Module = bi.Main.Path
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision", "vcs.time", "vcs.modified":
				if !linked {
					info.vcs(s)
				}
			case "vcs":
			default:
				if s.Value != "" {
					info.Settings = append(info.Settings, Setting{s.Key, s.Value})
				}
			}
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	return info
}

// vcs takes one of the go command's vcs.* settings.
func (i *Info) vcs(s debug.BuildSetting) {
	switch s.Key {
	case "vcs.revision":
		i.Revision = s.Value
	case "vcs.time":
		i.Time = s.Value
	case "vcs.modified":
		i.Modified = s.Value == "true"
	}
}

// Setting returns the value of a build setting, "" when it is not set.
func (i Info) Setting(key string) string {
	for _, s := range i.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// String is what `worker version` prints: the version on the first line,
// then one line per fact.
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "worker %s\n", i.Version)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "  %-9s %s\n", k, v)
		}
	}
	rev := i.Revision
	if rev != "" && i.Modified {
		rev += " (modified)"
	}
	row("revision", rev)
	row("time", i.Time)
	row("go", fmt.Sprintf("%s %s/%s", i.GoVersion, i.OS, i.Arch))
	row("module", i.Module)
	settings := make([]string, len(i.Settings))
	for n, s := range i.Settings {
		settings[n] = s.Key + "=" + s.Value
	}
	row("build", strings.Join(settings, " "))
	return b.String()
}
