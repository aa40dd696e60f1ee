package vmrunner

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"strconv"
)

// DecodePPM decodes a binary PPM (P6) image, the format of QEMU's screendump.
func DecodePPM(r io.Reader) (image.Image, error) {
	br := bufio.NewReader(r)
	var fields [4]int
	magic, err := ppmToken(br)
	if err != nil {
		return nil, fmt.Errorf("ppm: header: %w", err)
	}
	if magic != "P6" {
		return nil, fmt.Errorf("ppm: magic %q, want P6", magic)
	}
	for i := 1; i < 4; i++ {
		tok, err := ppmToken(br)
		if err != nil {
			return nil, fmt.Errorf("ppm: header: %w", err)
		}
		if fields[i], err = strconv.Atoi(tok); err != nil || fields[i] <= 0 {
			return nil, fmt.Errorf("ppm: bad header field %q", tok)
		}
	}
	w, h, maxval := fields[1], fields[2], fields[3]
	if maxval > 255 || w > 1<<15 || h > 1<<15 {
		return nil, fmt.Errorf("ppm: unsupported %dx%d image with maxval %d", w, h, maxval)
	}
	pix := make([]byte, 3*w*h)
	if _, err := io.ReadFull(br, pix); err != nil {
		return nil, fmt.Errorf("ppm: pixels: %w", err)
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i, j := 0, 0; i < len(pix); i, j = i+3, j+4 {
		img.Pix[j], img.Pix[j+1], img.Pix[j+2], img.Pix[j+3] = scale(pix[i], maxval), scale(pix[i+1], maxval), scale(pix[i+2], maxval), 0xff
	}
	return img, nil
}

func scale(v byte, maxval int) byte {
	if maxval == 255 {
		return v
	}
	return byte(int(v) * 255 / maxval)
}

// ppmToken reads one whitespace-separated header token, skipping comments; the single whitespace
// byte after the last header token is consumed with it.
func ppmToken(br *bufio.Reader) (string, error) {
	var tok []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			if len(tok) > 0 && errors.Is(err, io.EOF) {
				return string(tok), nil
			}
			return "", err
		}
		switch {
		case b == '#' && len(tok) == 0:
			if _, err := br.ReadString('\n'); err != nil {
				return "", err
			}
		case b == ' ' || b == '\t' || b == '\n' || b == '\r':
			if len(tok) > 0 {
				return string(tok), nil
			}
		default:
			tok = append(tok, b)
		}
	}
}

// decodeScreendump decodes a screendump file's contents, PNG or PPM.
func decodeScreendump(data []byte) (image.Image, error) {
	if bytes.HasPrefix(data, []byte("\x89PNG")) {
		return png.Decode(bytes.NewReader(data))
	}
	return DecodePPM(bytes.NewReader(data))
}
