// Command bootfs drives the boot-side benchmark (bench/boot.sh): it prepares the inputs from the
// input cache and runs Kiln's initramfs writer and UKI builder on files, so that they can be timed
// against cpio+zstd/gzip and objcopy on the very same inputs.
//
//	bootfs prepare DIR                   DIR/vmlinuz, DIR/stub.efi, DIR/initrd.zst (Kiln Tiny)
//	bootfs initramfs ROOT OUT zstd|gzip  archive the directory ROOT (newc cpio, compressed)
//	bootfs uki STUB KERNEL INITRD OUT    build a UKI
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/kilnproject/kiln/assembler/cpio"
	"github.com/kilnproject/kiln/assembler/deb"
	"github.com/kilnproject/kiln/assembler/fstree"
	"github.com/kilnproject/kiln/assembler/initramfs"
	"github.com/kilnproject/kiln/assembler/kmod"
	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/assembler/uki"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bootfs:", err)
		os.Exit(1)
	}
}

func newest(pattern string) (*deb.Package, error) {
	cache := os.Getenv("KILN_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "kiln")
	}
	m, _ := filepath.Glob(filepath.Join(cache, "debs", pattern))
	if len(m) == 0 {
		return nil, fmt.Errorf("no %s in %s/debs: run make inputs", pattern, cache)
	}
	sort.Strings(m)
	return deb.Open(m[len(m)-1])
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: bootfs prepare|initramfs|uki ...")
	}
	switch {
	case args[0] == "prepare" && len(args) == 2:
		return prepare(args[1])
	case args[0] == "initramfs" && len(args) == 4:
		t := fstree.New()
		t.AllowDevices = true
		if err := t.AddOverlayDir(args[1], "", "root"); err != nil {
			return err
		}
		f, err := os.Create(args[2])
		if err != nil {
			return err
		}
		defer f.Close()
		w, err := initramfs.NewWriter(f, initramfs.Compression(args[3]))
		if err != nil {
			return err
		}
		if _, err := cpio.WriteTree(w, t, 0); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		return f.Close()
	case args[0] == "uki" && len(args) == 5:
		var in [3][]byte
		for i := range in {
			b, err := os.ReadFile(args[1+i])
			if err != nil {
				return err
			}
			in[i] = b
		}
		out, err := uki.Build(uki.Input{Stub: in[0], Kernel: in[1], Initrd: in[2], Cmdline: "console=ttyS0", OSRelease: "ID=kiln\n"})
		if err != nil {
			return err
		}
		return os.WriteFile(args[4], out, 0o644)
	}
	return fmt.Errorf("bad arguments %q", args)
}

func prepare(dir string) error {
	r := recipe.Default()
	bb, err := newest("busybox-static_*.deb")
	if err != nil {
		return err
	}
	busybox, err := initramfs.BusyboxFromDeb(bb)
	if err != nil {
		return err
	}
	kpkg, err := newest("linux-image-[0-9]*-amd64_*.deb")
	if err != nil {
		return err
	}
	k, err := kmod.ReadPackage(context.Background(), kpkg, r.Kernel.Modules, kmod.Options{})
	if err != nil {
		return err
	}
	mods := initramfs.Modules{Release: k.Release, Load: k.Set.Load}
	for _, m := range k.Set.Modules {
		mods.Files = append(mods.Files, initramfs.File{Path: m.Path, Data: m.Data})
	}
	res, err := initramfs.Build(context.Background(), initramfs.Spec{Name: r.Name, Version: r.Version,
		Hostname: r.System.Hostname, Timezone: r.System.Timezone, Busybox: busybox, Kernel: mods})
	if err != nil {
		return err
	}
	stub, err := newest("systemd-boot-efi_*.deb")
	if err != nil {
		return err
	}
	sb, err := stub.ReadFile("usr/lib/systemd/boot/efi/linuxx64.efi.stub")
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"vmlinuz": k.Image, "stub.efi": sb, "initrd.zst": res.Data} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
