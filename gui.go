//go:build !nogui

package main

import "github.com/kilnproject/kiln/app"

func runApp(version string) error {
	detachConsole()
	return app.Run(version)
}
