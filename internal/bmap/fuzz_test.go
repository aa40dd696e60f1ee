package bmap

import (
	"reflect"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the block map parser: it never panics, every range it accepts
// lies inside the image in order, and a parsed map survives Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	m := &Map{ImageSize: 10000, BlockSize: 4096, ChecksumType: "sha256", Ranges: []Range{
		{First: 0, Last: 0, Checksum: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{First: 2, Last: 2}}}
	good, err := m.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`<bmap version="1.3"><ImageSize>8192</ImageSize><BlockSize>4096</BlockSize><BlockMap><Range sha1="da39a3ee5e6b4b0d3255bfef95601890afd80709">0-1</Range></BlockMap></bmap>`))
	f.Add([]byte(`<bmap version="2.0"><ImageSize>9223372036854775807</ImageSize><BlockSize>4611686018427387904</BlockSize><ChecksumType>sha256</ChecksumType><BlockMap><Range>0-1</Range></BlockMap></bmap>`))
	f.Add([]byte(`<bmap version="2.0"><ImageSize>1</ImageSize><BlockSize>0</BlockSize></bmap>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			if m != nil {
				t.Fatalf("error %v with a map", err)
			}
			return
		}
		if m.BlockSize <= 0 || m.ImageSize < 0 {
			t.Fatalf("accepted block size %d, image size %d", m.BlockSize, m.ImageSize)
		}
		end := int64(0)
		for _, r := range m.Ranges {
			off, n := m.Bounds(r)
			if off < end || n <= 0 || off+n > m.ImageSize || off+n < off {
				t.Fatalf("range %+v gives bytes [%d, +%d) in a %d-byte image after %d", r, off, n, m.ImageSize, end)
			}
			end = off + n
		}
		if got := m.MappedBytes(); got < 0 || got > m.ImageSize {
			t.Fatalf("mapped bytes %d of %d", got, m.ImageSize)
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("a parsed map does not marshal: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("marshalled map does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(m, back) {
			t.Fatalf("round trip changed the map:\n%+v\n%+v", m, back)
		}
	})
}
