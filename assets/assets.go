// Package assets holds the files Kiln embeds: the default recipe, the image's init scripts and the
// application icon.
package assets

import _ "embed"

// DefaultRecipe is the built-in "Kiln Tiny" recipe (kiln.toml).
//
//go:embed kiln.toml
var DefaultRecipe []byte
