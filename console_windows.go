//go:build !nogui

package main

import (
	"unsafe"

	"golang.org/x/sys/windows"
)

// detachConsole closes the console window Windows opened for kiln.exe (a console program, so that
// the CLI works in scripts and terminals) when the app was started from Explorer: then kiln is
// the console's only process. Started from a terminal, the console is left alone.
func detachConsole() {
	k := windows.NewLazySystemDLL("kernel32.dll")
	var pids [2]uint32
	n, _, _ := k.NewProc("GetConsoleProcessList").Call(uintptr(unsafe.Pointer(&pids[0])), 2)
	if n == 1 {
		k.NewProc("FreeConsole").Call()
	}
}
