//go:build !nogui && !windows

package main

func detachConsole() {}
