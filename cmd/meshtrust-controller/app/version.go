package app

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version and revision are stamped at build time by `make build` and
// `make image`:
//
//	-ldflags "-X github.com/meshtrust/meshtrust/cmd/meshtrust-controller/app.version=0.2.0
//	          -X github.com/meshtrust/meshtrust/cmd/meshtrust-controller/app.revision=<commit>"
//
// The Makefile takes the version from the chart's appVersion, so the binary,
// the image tag and the chart agree. They are variables only because the
// linker can set nothing else; no code assigns them.
var (
	version  string
	revision string
)

// Version is the build's version: the stamped one, else the module version
// `go install ...@v` records, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Revision is the stamped commit, else the one the Go toolchain recorded,
// else "unknown".
func Revision() string {
	if revision != "" {
		return revision
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// VersionLine is what --version prints.
func VersionLine() string {
	return fmt.Sprintf("meshtrust-controller %s (revision %s, %s %s/%s)", Version(), Revision(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// newBuildInfo is meshtrust_build_info, always 1. Its labels say which
// build runs; the alert rules use the series' presence to tell a meshtrust
// target from any other, whatever the scrape job is called.
func newBuildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "meshtrust_build_info",
		Help:        "Always 1; the labels name the meshtrust-controller build (version, revision, Go version).",
		ConstLabels: prometheus.Labels{"version": Version(), "revision": Revision(), "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}
