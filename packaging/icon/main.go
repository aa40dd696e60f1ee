// Command icon renders Kiln's application icon (packaging/icon.svg) to a PNG: the one the app
// embeds and the packages install (assets/icon.png, 512×512).
//
//	go run ./packaging/icon -svg packaging/icon.svg -out assets/icon.png -size 512
package main

import (
	"flag"
	"fmt"
	"image"
	"image/png"
	"os"

	"github.com/fyne-io/oksvg"
	"github.com/srwiley/rasterx"
)

func main() {
	src := flag.String("svg", "packaging/icon.svg", "SVG source")
	out := flag.String("out", "assets/icon.png", "PNG to write")
	size := flag.Int("size", 512, "width and height in pixels")
	flag.Parse()
	if err := render(*src, *out, *size); err != nil {
		fmt.Fprintln(os.Stderr, "icon:", err)
		os.Exit(1)
	}
}

func render(src, out string, size int) error {
	icon, err := oksvg.ReadIcon(src, oksvg.StrictErrorMode)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	icon.SetTarget(0, 0, float64(size), float64(size))
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	scanner := rasterx.NewScannerGV(size, size, img, img.Bounds())
	icon.Draw(rasterx.NewDasher(size, size, scanner), 1)
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("encode %s: %w", out, err)
	}
	return f.Close()
}
