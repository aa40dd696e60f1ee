package assets

import _ "embed"

// IconPNG is the application icon, 512×512, rendered from packaging/icon.svg by
// `go run ./packaging/icon` (the app wraps it in a Fyne resource; this package stays GUI-free
// because the core packages import it).
//
//go:embed icon.png
var IconPNG []byte
