// Package version holds Kiln's version string, set at build time with
// -ldflags "-X github.com/kilnproject/kiln/internal/version.Version=…".
package version

// Version is the version of kiln and kiln-agent.
var Version = "0.1.0-dev"
