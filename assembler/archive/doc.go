// Package archive is a pure-Go client for Debian package archives: it reads the apt sources and
// keyring (the caller's or the host's), fetches and verifies InRelease, fetches the Packages
// indices it lists (size and SHA-256 checked), resolves a set of package requests to the closure
// apt would install, downloads the .debs into a content-addressed cache and reads and writes the
// kiln.lock lockfile. It knows nothing about images.
//
// The deb822 and dependency-relation parsers are this package's own; version ordering is
// assembler/deb's. pault.ag/go/debian v0.19.0 was measured against them on bookworm main amd64
// (63,440 stanzas) in one run on a shared 2-core machine: its paragraph reader alone took 3.8 s
// and 287 MB of allocations, its reflection-based decoding into BinaryIndex 7.9 s and 527 MB;
// ParsePackages here, relations parsed and fields validated, 1.1 s and 136 MB. It also caps
// field, paragraph and file sizes, which the library does not. The library's version comparison
// and relation parsing agreed on the cases tried, so speed, memory and limits decided.
package archive
