// Package kmod computes the closure of kernel modules an image needs and the module metadata
// files (modules.dep, modules.alias, modules.order, modules.builtin) that busybox modprobe reads.
//
// Debian's linux-image packages ship no modules.dep: depmod makes it when the package is installed.
// kmod therefore reads each module's ELF .modinfo section (depends=, softdep= pre:, alias=, name=)
// itself, for .ko, .ko.xz and .ko.zst files. Names compare with '-' and '_' equal, as the kernel
// does; a module that modules.builtin lists is built into the kernel and needs no file.
//
// ReadPackage takes everything an image needs from a linux-image .deb in one pass over its data
// (the kernel image and the module closure), using an index of the package's modules that it
// keeps in a cache directory; without a cached index the first build of a package scans it and
// may need a second pass for dependencies that came earlier in the archive than their users.
package kmod

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/kilnproject/kiln/assembler/internal/suggest"
	"github.com/kilnproject/kiln/internal/pxz"
)

// ErrUnknownModule is wrapped by the error for requested modules the kernel does not have.
var ErrUnknownModule = errors.New("unknown kernel module")

// Module is one loadable module of a kernel.
type Module struct {
	Name    string   `json:"name"`               // canonical name, '-' written as '_' ("virtio_blk")
	Path    string   `json:"path"`               // relative to lib/modules/<release>/ ("kernel/fs/fat/vfat.ko")
	Depends []string `json:"depends,omitempty"`  // hard dependencies (depends=)
	SoftPre []string `json:"soft_pre,omitempty"` // softdep pre: modules, loaded first when present
	Aliases []string `json:"aliases,omitempty"`  // alias= patterns ("fs-vfat", "pci:v00001AF4d00001001sv*...")
	Data    []byte   `json:"-"`                  // file contents, filled by ReadPackage or ReadData
}

// Index describes the modules of one kernel release.
type Index struct {
	Release string             `json:"release"`
	Modules map[string]*Module `json:"modules"` // by canonical name
	Builtin []string           `json:"builtin"` // canonical names of built-in modules, sorted
	// BuiltinPaths are the lines of the kernel's modules.builtin ("kernel/fs/ext4/ext4.ko").
	BuiltinPaths []string `json:"builtin_paths"`
	Order        []string `json:"order"` // module paths in modules.order order

	builtin map[string]bool
}

// Name returns the canonical form of a module name or file name: directory and .ko[.xz|.zst]
// suffix removed, '-' replaced by '_'.
func Name(s string) string {
	s = path.Base(s)
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(s, ext) {
			s = strings.TrimSuffix(s, ext)
			break
		}
	}
	return strings.ReplaceAll(s, "-", "_")
}

func isModuleFile(p string) bool {
	return strings.HasSuffix(p, ".ko") || strings.HasSuffix(p, ".ko.xz") || strings.HasSuffix(p, ".ko.zst")
}

// ModInfo is the parsed .modinfo section of a module.
type ModInfo struct {
	Name    string
	Depends []string
	SoftPre []string
	Aliases []string
}

// ParseModInfo reads the .modinfo section of a module file (.ko, or .ko.xz / .ko.zst contents;
// the compression is recognised by content).
func ParseModInfo(data []byte) (*ModInfo, error) {
	raw, err := uncompress(data)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("not an ELF module: %w", err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	b, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf(".modinfo: %w", err)
	}
	mi := &ModInfo{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			mi.Name = Name(v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					mi.Depends = append(mi.Depends, Name(d))
				}
			}
		case "softdep":
			mi.SoftPre = append(mi.SoftPre, parseSoftdep(v)...)
		case "alias":
			mi.Aliases = append(mi.Aliases, v)
		}
	}
	return mi, nil
}

// parseSoftdep returns the "pre:" modules of a softdep value ("pre: crc32c post: foo").
func parseSoftdep(v string) []string {
	var pre []string
	in := false
	for _, w := range strings.Fields(v) {
		switch w {
		case "pre:":
			in = true
		case "post:":
			in = false
		default:
			if in {
				pre = append(pre, Name(w))
			}
		}
	}
	return pre
}

var zstdDec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))

// uncompress returns the ELF bytes of a possibly xz- or zstd-compressed module.
func uncompress(data []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(data, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		idx, err := pxz.ReadIndex(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return nil, err
		}
		r := pxz.NewReader(bytes.NewReader(data), idx, 1)
		defer r.Close()
		out, err := io.ReadAll(r)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		return out, nil
	case bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		out, err := zstdDec.DecodeAll(data, nil)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return out, nil
	}
	return data, nil
}

// NewIndex returns an empty index for a release; Add fills it.
func NewIndex(release string) *Index {
	return &Index{Release: release, Modules: map[string]*Module{}, builtin: map[string]bool{}}
}

// Add records a module found at p (relative to lib/modules/<release>/) with its contents.
func (ix *Index) Add(p string, data []byte) (*Module, error) {
	mi, err := ParseModInfo(data)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", p, err)
	}
	name := mi.Name
	if name == "" {
		name = Name(p)
	}
	m := &Module{Name: name, Path: p, Depends: mi.Depends, SoftPre: mi.SoftPre, Aliases: mi.Aliases}
	ix.Modules[name] = m
	return m, nil
}

// SetBuiltin records modules.builtin (one module path per line).
func (ix *Index) SetBuiltin(b []byte) {
	ix.builtin = map[string]bool{}
	ix.Builtin, ix.BuiltinPaths = nil, nil
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			ix.BuiltinPaths = append(ix.BuiltinPaths, l)
			n := Name(l)
			if !ix.builtin[n] {
				ix.builtin[n] = true
				ix.Builtin = append(ix.Builtin, n)
			}
		}
	}
	sort.Strings(ix.Builtin)
}

// SetOrder records modules.order (one module path per line).
func (ix *Index) SetOrder(b []byte) {
	ix.Order = nil
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			ix.Order = append(ix.Order, l)
		}
	}
}

// IsBuiltin reports whether the named module is built into the kernel.
func (ix *Index) IsBuiltin(name string) bool {
	if ix.builtin == nil {
		ix.builtin = map[string]bool{}
		for _, n := range ix.Builtin {
			ix.builtin[n] = true
		}
	}
	return ix.builtin[Name(name)]
}

// lookup finds a module by name or by an exact alias ("fs-vfat", "crypto-crc32c").
func (ix *Index) lookup(name string) *Module {
	n := Name(name)
	if m := ix.Modules[n]; m != nil {
		return m
	}
	var hits []*Module
	for _, m := range ix.Modules {
		for _, a := range m.Aliases {
			if a == name {
				hits = append(hits, m)
				break
			}
		}
	}
	if len(hits) == 0 {
		return nil
	}
	sort.Slice(hits, func(i, j int) bool { return hits[i].Name < hits[j].Name })
	return hits[0]
}

// Set is the closure of a request: the modules to place, dependencies before dependents.
type Set struct {
	Release string
	Modules []*Module // dependencies before dependents
	// Load lists the requested modules that are files, in the request's order (canonical names),
	// for init to modprobe; requested modules that are built in are not in it.
	Load []string
	// Builtin lists the requested modules that are built into the kernel.
	Builtin []string

	ix *Index
}

// Closure resolves the requested module names (or aliases) and their dependencies. Hard
// dependencies must exist (or be built in); softdep pre modules are added when the kernel has
// them. Unknown names are all reported in one error wrapping ErrUnknownModule, each with the
// closest known names.
func (ix *Index) Closure(names []string) (*Set, error) {
	s := &Set{Release: ix.Release, ix: ix}
	state := map[string]int{} // 1: visiting, 2: done
	var unknown []string
	var missingDeps []string
	var visit func(m *Module, chain []string)
	visit = func(m *Module, chain []string) {
		if state[m.Name] != 0 {
			return // done, or a cycle (the kernel refuses those; keep the first order)
		}
		state[m.Name] = 1
		for _, d := range m.SoftPre {
			if dm := ix.lookup(d); dm != nil && !ix.IsBuiltin(d) {
				visit(dm, append(chain, m.Name))
			}
		}
		for _, d := range m.Depends {
			if ix.IsBuiltin(d) {
				continue
			}
			dm := ix.Modules[d]
			if dm == nil {
				missingDeps = append(missingDeps, fmt.Sprintf("%s (needed by %s)", d, strings.Join(append(chain, m.Name), " → ")))
				continue
			}
			visit(dm, append(chain, m.Name))
		}
		state[m.Name] = 2
		s.Modules = append(s.Modules, m)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if ix.IsBuiltin(n) {
			if !seen[Name(n)] {
				s.Builtin = append(s.Builtin, Name(n))
				seen[Name(n)] = true
			}
			continue
		}
		m := ix.lookup(n)
		if m == nil {
			unknown = append(unknown, n)
			continue
		}
		if !seen[m.Name] {
			s.Load = append(s.Load, m.Name)
			seen[m.Name] = true
		}
		visit(m, nil)
	}
	if len(unknown) > 0 {
		known := make([]string, 0, len(ix.Modules)+len(ix.Builtin))
		for n := range ix.Modules {
			known = append(known, n)
		}
		known = append(known, ix.Builtin...)
		var parts []string
		for _, u := range unknown {
			msg := fmt.Sprintf("%q", u)
			if c := suggest.Closest(u, known, 3); len(c) > 0 {
				msg += fmt.Sprintf(" (did you mean %s?)", quoteJoin(c))
			}
			parts = append(parts, msg)
		}
		return nil, fmt.Errorf("%w in kernel %s: %s; check kernel.modules in the recipe (modinfo names, as in lsmod)",
			ErrUnknownModule, ix.Release, strings.Join(parts, ", "))
	}
	if len(missingDeps) > 0 {
		return nil, fmt.Errorf("kernel %s: modules depend on modules the kernel package lacks: %s", ix.Release, strings.Join(missingDeps, ", "))
	}
	return s, nil
}

func quoteJoin(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// deps returns the transitive hard and softdep-pre dependencies of m that are files, in load
// order (a module's dependencies before it).
func (s *Set) deps(m *Module) []*Module {
	var out []*Module
	seen := map[string]bool{m.Name: true}
	var visit func(x *Module)
	visit = func(x *Module) {
		for _, d := range append(append([]string{}, x.SoftPre...), x.Depends...) {
			dm := s.ix.Modules[d]
			if dm == nil && !s.ix.IsBuiltin(d) {
				dm = s.ix.lookup(d) // softdeps may name an alias
			}
			if dm == nil || seen[dm.Name] {
				continue
			}
			seen[dm.Name] = true
			visit(dm)
			out = append(out, dm)
		}
	}
	visit(m)
	return out
}

// ModulesDep renders modules.dep for the set's modules in depmod's format: each module's line
// lists its dependencies in the order modprobe unloads them (modprobe loads them last to first).
func (s *Set) ModulesDep() []byte {
	var b bytes.Buffer
	for _, m := range s.sortedByOrder() {
		b.WriteString(m.Path + ":")
		d := s.deps(m)
		for i := len(d) - 1; i >= 0; i-- {
			b.WriteString(" " + d[i].Path)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ModulesOrder renders modules.order for the set's modules, in the kernel's order.
func (s *Set) ModulesOrder() []byte {
	var b bytes.Buffer
	for _, m := range s.sortedByOrder() {
		b.WriteString(m.Path + "\n")
	}
	return b.Bytes()
}

// ModulesAlias renders modules.alias ("alias <pattern> <module>") for the set's modules, so that
// modprobe resolves aliases such as "fs-vfat" and device modaliases.
func (s *Set) ModulesAlias() []byte {
	var b bytes.Buffer
	b.WriteString("# Aliases extracted from modules themselves.\n")
	for _, m := range s.sortedByOrder() {
		for _, a := range m.Aliases {
			fmt.Fprintf(&b, "alias %s %s\n", a, m.Name)
		}
	}
	return b.Bytes()
}

// ModulesBuiltin renders modules.builtin: the kernel's built-in modules, one path per line, as the
// kernel package lists them.
func (s *Set) ModulesBuiltin() []byte {
	var b bytes.Buffer
	for _, p := range s.ix.BuiltinPaths {
		b.WriteString(p + "\n")
	}
	return b.Bytes()
}

// Files returns the metadata files for lib/modules/<release>/, by name.
func (s *Set) Files() map[string][]byte {
	return map[string][]byte{
		"modules.dep":     s.ModulesDep(),
		"modules.order":   s.ModulesOrder(),
		"modules.alias":   s.ModulesAlias(),
		"modules.builtin": s.ModulesBuiltin(),
	}
}

// sortedByOrder returns the set's modules in modules.order order (unknown ones last, by path).
func (s *Set) sortedByOrder() []*Module {
	pos := map[string]int{}
	for i, p := range s.ix.Order {
		pos[p] = i + 1
	}
	out := append([]*Module(nil), s.Modules...)
	sort.SliceStable(out, func(i, j int) bool {
		pi, pj := pos[out[i].Path], pos[out[j].Path]
		if pi == 0 || pj == 0 {
			if pi == pj {
				return out[i].Path < out[j].Path
			}
			return pi != 0
		}
		return pi < pj
	})
	return out
}
