// Package deps pins the modules Kiln's packages are being built on until each is imported for real.
package deps

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/brutella/dnssd"
	_ "github.com/diskfs/go-diskfs"
	_ "github.com/google/gousb"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/schollz/progressbar/v3"
	_ "github.com/sirupsen/logrus"
	_ "github.com/theupdateframework/go-tuf/v2/metadata"
	_ "github.com/ulikunitz/xz"
	_ "golang.org/x/sys/unix"
)
