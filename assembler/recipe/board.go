package recipe

import (
	"github.com/kilnproject/kiln/assembler/board"
	"github.com/kilnproject/kiln/assembler/internal/tomllines"
)

// BoardRef is the board the recipe builds for: board.name, else the default board of its arch
// ("pc" for x86_64, "arm64-uefi" for aarch64).
func (r *Recipe) BoardRef() string {
	switch {
	case r.Board.Name != "":
		return r.Board.Name
	case r.Arch == board.ArchAArch64:
		return "arm64-uefi"
	}
	return board.Default
}

// LoadBoard reads the recipe's board: a built-in one by name, or a board file (relative to the
// recipe's directory).
func (r *Recipe) LoadBoard() (*board.Board, error) {
	ref := r.BoardRef()
	if board.IsPath(ref) {
		return board.Load(r.Resolve(ref))
	}
	return board.Builtin(ref)
}

// ApplyBoard sets the arch and every field the board gives a default for (firmware, sizes, boot
// loader, boot tries, kernel package, command line and modules) to b's value, except the fields
// keep protects ("board.disk_size", "kernel.modules", …; nil: none). A front end that lets the
// user pick a board calls it with nil.
func (r *Recipe) ApplyBoard(b *board.Board, keep func(field string) bool) {
	if keep == nil {
		keep = func(string) bool { return false }
	}
	set := func(field string, apply func()) {
		if !keep(field) {
			apply()
		}
	}
	set("arch", func() { r.Arch = b.Arch })
	set("board.firmware", func() { r.Board.Firmware = b.Firmware })
	set("board.disk_size", func() { r.Board.DiskSize = b.Layout.DiskSize })
	set("board.esp_size", func() { r.Board.ESPSize = b.Layout.ESPSize })
	set("board.data_size", func() { r.Board.DataSize = b.Layout.DataSize })
	set("board.bootloader", func() { r.Board.Bootloader = b.Boot.Bootloader })
	set("board.grub", func() { r.Board.GRUB = b.Boot.GRUB })
	set("board.boot_tries", func() { r.Board.BootTries = b.Boot.BootTries })
	set("kernel.package", func() { r.Kernel.Package = b.Kernel.Package })
	set("kernel.cmdline", func() { r.Kernel.Cmdline = b.Kernel.Cmdline })
	set("kernel.modules", func() { r.Kernel.Modules = append([]string(nil), b.Kernel.Modules...) })
}

// applyBoard applies the board a recipe file names (or the default board of the arch it names)
// to the fields the file leaves out.
func (r *Recipe) applyBoard() []Problem {
	_, nameSet := r.lines["board.name"]
	_, archSet := r.lines["arch"]
	if !nameSet && (!archSet || (r.Arch != board.ArchX86_64 && r.Arch != board.ArchAArch64)) {
		return nil // the default recipe's values are the pc board's; validation reports a bad arch
	}
	b, err := r.LoadBoard()
	if err != nil {
		return nil // Validate reports it
	}
	if archSet && nameSet && r.Arch != b.Arch {
		return []Problem{{File: r.Path, Line: tomllines.LineOf(r.lines, "arch"), Field: "arch",
			Msg:  "arch " + r.Arch + " contradicts board " + b.Name + " (" + b.Arch + ")",
			Hint: "remove arch: the board sets it"}}
	}
	r.ApplyBoard(b, func(f string) bool { _, ok := r.lines[f]; return ok })
	return nil
}

// IsSet reports whether the recipe file sets field ("board.disk_size"), rather than taking the
// board's or the default value. A recipe made in code sets none.
func (r *Recipe) IsSet(field string) bool { _, ok := r.lines[field]; return ok }
