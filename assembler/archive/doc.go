// Package archive is a pure-Go client for Debian package archives: it reads the apt sources and
// keyring (the caller's or the host's), fetches and verifies InRelease, fetches the Packages
// indices it lists (size and SHA-256 checked), resolves a set of package requests to the closure
// apt would install, downloads the .debs into a content-addressed cache and reads and writes the
// kiln.lock lockfile. It knows nothing about images.
//
// The deb822, version and dependency-relation parsers are this package's own. pault.ag/go/debian
// v0.19.0 was measured on bookworm main amd64 (63,440 stanzas, 2 cores): its paragraph reader
// alone takes 0.60 s and 287 MB of allocations, its reflection-based decoding into BinaryIndex
// 5.2 s and 527 MB; the parser here reads the same file into Packages, relations parsed, in
// about a tenth of the paragraph reader's time (see BenchmarkParsePackages), and it caps field,
// stanza and file sizes, which the library does not. Its version comparison agrees with this
// package's on the cases tested (compare_test.go).
package archive
