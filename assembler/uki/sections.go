package uki

import (
	"fmt"
	"strings"
)

// Section is one PE section of an image as recorded in its section table.
type Section struct {
	Name            string
	VirtualAddress  uint32 // RVA in memory
	VirtualSize     uint32 // size in memory; systemd-stub's size of the payload
	Offset          uint32 // PointerToRawData
	Size            uint32 // SizeOfRawData (file-aligned)
	Characteristics uint32
	// Data is the section's payload: the raw data cut to VirtualSize (a sub-slice of the image).
	Data []byte
}

// Sections parses the section table of a PE image (a UKI or any EFI binary).
func Sections(image []byte) ([]Section, error) {
	h, err := parseHeader(image)
	if err != nil {
		return nil, fmt.Errorf("uki: %w", err)
	}
	s, err := readSections(image, h)
	if err != nil {
		return nil, fmt.Errorf("uki: %w", err)
	}
	return s, nil
}

// Find returns the named section.
func Find(sections []Section, name string) (Section, bool) {
	for _, s := range sections {
		if s.Name == name {
			return s, true
		}
	}
	return Section{}, false
}

func readSections(b []byte, h *header) ([]Section, error) {
	out := make([]Section, 0, h.nsec)
	for i := 0; i < h.nsec; i++ {
		sh := b[h.secTable+sectionHeaderSize*i:][:sectionHeaderSize]
		s := Section{
			Name:            strings.TrimRight(string(sh[:8]), "\x00"),
			VirtualSize:     le.Uint32(sh[8:]),
			VirtualAddress:  le.Uint32(sh[12:]),
			Size:            le.Uint32(sh[16:]),
			Offset:          le.Uint32(sh[20:]),
			Characteristics: le.Uint32(sh[36:]),
		}
		if s.Size > 0 {
			if uint64(s.Offset)+uint64(s.Size) > uint64(len(b)) {
				return nil, fmt.Errorf("%w: section %s raw data [%#x, %#x) beyond the end of the file (%#x)",
					ErrNotPE, s.Name, s.Offset, uint64(s.Offset)+uint64(s.Size), len(b))
			}
			n := s.Size
			if s.VirtualSize != 0 && s.VirtualSize < n {
				n = s.VirtualSize
			}
			s.Data = b[s.Offset : s.Offset+n]
		}
		out = append(out, s)
	}
	return out, nil
}
