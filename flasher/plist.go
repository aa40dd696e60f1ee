package flasher

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
)

// parsePlist decodes an XML property list (what diskutil -plist prints) into maps, slices,
// strings, int64, float64 and bool values.
func parsePlist(data []byte) (any, error) {
	dec := xml.NewDecoder(strings.NewReader(string(data)))
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("plist: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local != "plist" {
			return plistValue(dec, se, 0)
		}
	}
}

// maxPlistDepth bounds the nesting of dicts and arrays (diskutil's output nests four deep).
const maxPlistDepth = 32

func plistValue(dec *xml.Decoder, se xml.StartElement, depth int) (any, error) {
	if depth > maxPlistDepth {
		return nil, fmt.Errorf("plist: nested deeper than %d", maxPlistDepth)
	}
	switch se.Name.Local {
	case "dict":
		m := map[string]any{}
		key := ""
		for {
			tok, err := dec.Token()
			if err != nil {
				return nil, err
			}
			switch t := tok.(type) {
			case xml.StartElement:
				if t.Name.Local == "key" {
					var k string
					if err := dec.DecodeElement(&k, &t); err != nil {
						return nil, err
					}
					key = k
					continue
				}
				v, err := plistValue(dec, t, depth+1)
				if err != nil {
					return nil, err
				}
				m[key] = v
			case xml.EndElement:
				return m, nil
			}
		}
	case "array":
		var a []any
		for {
			tok, err := dec.Token()
			if err != nil {
				return nil, err
			}
			switch t := tok.(type) {
			case xml.StartElement:
				v, err := plistValue(dec, t, depth+1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			case xml.EndElement:
				return a, nil
			}
		}
	case "true", "false":
		if err := dec.Skip(); err != nil {
			return nil, err
		}
		return se.Name.Local == "true", nil
	}
	var s string
	if err := dec.DecodeElement(&s, &se); err != nil {
		return nil, err
	}
	s = strings.TrimSpace(s)
	switch se.Name.Local {
	case "integer":
		return strconv.ParseInt(s, 10, 64)
	case "real":
		return strconv.ParseFloat(s, 64)
	case "data":
		return base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	}
	return s, nil
}

// plist accessors that tolerate missing keys.
func pStr(m map[string]any, k string) string { s, _ := m[k].(string); return s }
func pInt(m map[string]any, k string) int64  { n, _ := m[k].(int64); return n }
func pBool(m map[string]any, k string) bool  { b, _ := m[k].(bool); return b }
func pList(m map[string]any, k string) []map[string]any {
	var out []map[string]any
	a, _ := m[k].([]any)
	for _, v := range a {
		if d, ok := v.(map[string]any); ok {
			out = append(out, d)
		}
	}
	return out
}

// wholeDiskOf strips the slice suffix from a macOS device identifier: disk4s2 → disk4.
func wholeDiskOf(id string) string {
	if i := strings.LastIndex(id, "s"); i > len("disk") {
		return id[:i]
	}
	return id
}

// diskutilDevices builds the drive list from `diskutil list -plist` and a `diskutil info -plist`
// per whole disk. Mounts of APFS volumes count for the physical disks of their container.
func diskutilDevices(list map[string]any, info func(id string) (map[string]any, error)) []Device {
	mounts := map[string][]string{}
	synthesized := map[string]bool{}
	for _, e := range pList(list, "AllDisksAndPartitions") {
		id := pStr(e, "DeviceIdentifier")
		owners := []string{id}
		if stores := pList(e, "APFSPhysicalStores"); len(stores) > 0 {
			synthesized[id] = true
			owners = nil
			for _, s := range stores {
				owners = append(owners, wholeDiskOf(pStr(s, "DeviceIdentifier")))
			}
		}
		var mps []string
		if mp := pStr(e, "MountPoint"); mp != "" {
			mps = append(mps, mp)
		}
		for _, sub := range append(pList(e, "Partitions"), pList(e, "APFSVolumes")...) {
			if mp := pStr(sub, "MountPoint"); mp != "" {
				mps = append(mps, mp)
			}
		}
		for _, o := range owners {
			mounts[o] = append(mounts[o], mps...)
		}
	}
	var out []Device
	for _, e := range pList(list, "AllDisksAndPartitions") {
		id := pStr(e, "DeviceIdentifier")
		if synthesized[id] {
			continue
		}
		in, err := info(id)
		if err != nil {
			continue
		}
		d := Device{Path: "/dev/" + id, Name: id, Size: max(pInt(in, "TotalSize"), pInt(in, "Size"), 0),
			LogicalBlockSize: int(pInt(in, "DeviceBlockSize")), Model: pStr(in, "MediaName"),
			Removable: pBool(in, "Removable") || pBool(in, "RemovableMedia") || pBool(in, "Ejectable"),
			ReadOnly:  !pBool(in, "WritableMedia") && in["WritableMedia"] != nil}
		if bs := d.LogicalBlockSize; bs < 512 || bs > 64<<10 || bs&(bs-1) != 0 {
			d.LogicalBlockSize = 512
		}
		switch pStr(in, "BusProtocol") {
		case "USB":
			d.Transport = "usb"
		case "Secure Digital":
			d.Transport = "mmc"
		case "SATA":
			d.Transport = "sata"
		case "PCI-Express", "PCI", "Apple Fabric":
			d.Transport = "nvme"
		case "Disk Image":
			d.Transport = "disk-image"
		default:
			d.Transport = strings.ToLower(pStr(in, "BusProtocol"))
		}
		d.Internal = pBool(in, "Internal") && !d.Removable && d.Transport != "usb" && d.Transport != "disk-image"
		for _, mp := range mounts[id] {
			d.Mounts = append(d.Mounts, mp)
			if !d.System && isSystemMount(mp) {
				d.System, d.SystemReason = true, mp+" is mounted from "+id
			}
		}
		out = append(out, d)
	}
	return out
}
