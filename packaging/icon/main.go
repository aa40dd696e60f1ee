// Command icon renders Kiln's application icon (packaging/icon.svg) to a PNG: the one the app
// embeds and the packages install (assets/icon.png, 512×512), or to a Windows .ico (PNG images of
// 16 to 256 pixels) for kiln.exe's resources.
//
//	go run ./packaging/icon -svg packaging/icon.svg -out assets/icon.png -size 512
//	go run ./packaging/icon -svg packaging/icon.svg -ico kiln.ico
package main

import (
	"bytes"
	"encoding/binary"
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
	ico := flag.String("ico", "", "write a Windows .ico here instead of the PNG")
	flag.Parse()
	var err error
	if *ico != "" {
		err = writeICO(*src, *ico)
	} else {
		err = render(*src, *out, *size)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "icon:", err)
		os.Exit(1)
	}
}

func rasterise(src string, size int) (*image.RGBA, error) {
	icon, err := oksvg.ReadIcon(src, oksvg.StrictErrorMode)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", src, err)
	}
	icon.SetTarget(0, 0, float64(size), float64(size))
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	scanner := rasterx.NewScannerGV(size, size, img, img.Bounds())
	icon.Draw(rasterx.NewDasher(size, size, scanner), 1)
	return img, nil
}

// writeICO writes an .ico whose images are PNGs (read by Windows Vista and later).
func writeICO(src, out string) error {
	sizes := []int{16, 24, 32, 48, 64, 256}
	var dir, data bytes.Buffer
	le := func(b *bytes.Buffer, v ...any) {
		for _, x := range v {
			binary.Write(b, binary.LittleEndian, x)
		}
	}
	le(&dir, uint16(0), uint16(1), uint16(len(sizes))) // ICONDIR: reserved, type icon, count
	offset := 6 + 16*len(sizes)
	for _, n := range sizes {
		img, err := rasterise(src, n)
		if err != nil {
			return err
		}
		var p bytes.Buffer
		if err := png.Encode(&p, img); err != nil {
			return err
		}
		// ICONDIRENTRY: width, height (0 = 256), colours, reserved, planes, bits, size, offset
		le(&dir, uint8(n%256), uint8(n%256), uint8(0), uint8(0), uint16(1), uint16(32), uint32(p.Len()), uint32(offset+data.Len()))
		data.Write(p.Bytes())
	}
	if err := os.WriteFile(out, append(dir.Bytes(), data.Bytes()...), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}

func render(src, out string, size int) error {
	img, err := rasterise(src, size)
	if err != nil {
		return err
	}
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
