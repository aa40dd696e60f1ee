package assembler

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/initramfs"
)

// readKernel reads the kernel image and the requested modules with their dependencies from a
// linux-image package in one pass over its data.
// TEMPORARY: replaced by package kmod.
func readKernel(ctx context.Context, pkg *deb.Package, want, optional []string) (kernelParts, error) {
	var kp kernelParts
	kos := map[string][]byte{}
	paths := map[string]string{}
	builtin := map[string]bool{}
	err := pkg.Walk(func(h *tar.Header, r io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(h.Name, "boot/vmlinuz-"):
			kp.release = strings.TrimPrefix(h.Name, "boot/vmlinuz-")
			var err error
			kp.image, err = io.ReadAll(r)
			return err
		case strings.HasSuffix(h.Name, ".ko") && strings.HasPrefix(h.Name, "lib/modules/"):
			data, err := io.ReadAll(r)
			n := modName(h.Name)
			kos[n] = data
			paths[n] = h.Name
			return err
		case strings.HasSuffix(h.Name, "/modules.builtin"):
			data, err := io.ReadAll(r)
			for _, l := range strings.Split(string(data), "\n") {
				if l != "" {
					builtin[modName(l)] = true
				}
			}
			return err
		}
		return nil
	})
	if err != nil {
		return kp, err
	}
	seen := map[string]bool{}
	var visit func(string) error
	visit = func(n string) error {
		if seen[n] || builtin[n] {
			return nil
		}
		data, ok := kos[n]
		if !ok {
			return fmt.Errorf("module %s not found", n)
		}
		seen[n] = true
		f, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			return err
		}
		sec := f.Section(".modinfo")
		if sec != nil {
			mi, _ := sec.Data()
			for _, kv := range bytes.Split(mi, []byte{0}) {
				if d, ok := bytes.CutPrefix(kv, []byte("depends=")); ok && len(d) > 0 {
					for _, dep := range strings.Split(string(d), ",") {
						if err := visit(modName(dep)); err != nil {
							return err
						}
					}
				}
			}
		}
		rel := strings.SplitN(paths[n], "/", 4)[3]
		kp.modules = append(kp.modules, initramfs.File{Path: rel, Mode: 0o644, Data: data, Origin: pkg.Name + " " + pkg.Version + " /" + paths[n]})
		return nil
	}
	loaded := map[string]bool{}
	for i, w := range append(append([]string(nil), want...), optional...) {
		n := modName(w)
		if loaded[n] {
			continue
		}
		if _, ok := kos[n]; !ok && i >= len(want) {
			continue
		}
		if err := visit(n); err != nil {
			return kp, err
		}
		if !builtin[n] {
			kp.load = append(kp.load, n)
			loaded[n] = true
		}
	}
	return kp, nil
}

func modName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}
