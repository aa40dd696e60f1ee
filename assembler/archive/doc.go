// Package archive is a pure-Go client for Debian package archives: it reads the apt sources and
// keyring (the caller's or the host's), fetches and verifies InRelease, fetches the Packages
// indices it lists (size and SHA-256 checked), resolves a set of package requests to the closure
// apt would install, downloads the .debs into a content-addressed cache and reads and writes the
// kiln.lock lockfile. It knows nothing about images.
//
// The deb822 and dependency-relation parsers are this package's own; version ordering is
// assembler/deb's. pault.ag/go/debian v0.19.0 was measured on bookworm main amd64 (63,440
// stanzas, same machine): its paragraph reader alone takes 0.60 s and 287 MB of allocations, its
// reflection-based decoding into BinaryIndex 5.2 s and 527 MB, where this package reads the same
// file into Packages with relations parsed in less time than the paragraph reader alone (see
// BenchmarkRealResolve) and caps field, paragraph and file sizes, which the library does not. Its
// version comparison and relation parsing agreed with these on the cases tried, so correctness
// did not decide it; speed, memory and limits did.
package archive
