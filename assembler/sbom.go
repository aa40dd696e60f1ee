package assembler

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/url"
	"os"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

// SBOMName is the file name of an image's software bill of materials (CycloneDX 1.5 JSON),
// written next to the image.
func SBOMName(name string) string { return name + ".cdx.json" }

// SBOM returns the manifest's software bill of materials as CycloneDX 1.5 JSON: the image as
// the described component, and every installed package and input package (kernel, busybox, boot
// loader) with its version, package URL, the .deb's SHA-256 and its licences as Debian names them.
// Timestamp and serial number derive from the manifest, so the same build gives the same bytes.
func SBOM(m *Manifest) ([]byte, error) {
	bom := cdx.NewBOM()
	bom.SpecVersion = cdx.SpecVersion1_5
	bom.JSONSchema = "http://cyclonedx.org/schema/bom-1.5.schema.json"
	seed := sha256.Sum256([]byte(fmt.Sprintf("kiln-sbom\x00%s\x00%s\x00%s", m.Name, m.Version, m.Image.SHA256)))
	u := seed[:16]
	u[6], u[8] = u[6]&0x0f|0x50, u[8]&0x3f|0x80 // a name-based (version 5 layout) RFC 4122 UUID
	bom.SerialNumber = fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	bom.Metadata = &cdx.Metadata{
		Timestamp: time.Unix(m.SourceDateEpoch, 0).UTC().Format(time.RFC3339),
		Tools:     &cdx.ToolsChoice{Components: &[]cdx.Component{{Type: cdx.ComponentTypeApplication, Name: "kiln", Version: m.Kiln}}},
		Component: &cdx.Component{BOMRef: "image", Type: cdx.ComponentTypeOS, Name: m.Name, Version: m.Version,
			Hashes: &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: m.Image.SHA256}}},
	}
	var comps []cdx.Component
	var refs []string
	add := func(name, version, arch, sum string, licenses []string, input bool) {
		ref := "pkg:deb/debian/" + url.PathEscape(name) + "@" + url.PathEscape(version) + "?arch=" + url.QueryEscape(arch)
		c := cdx.Component{BOMRef: ref, Type: cdx.ComponentTypeLibrary, Name: name, Version: version, PackageURL: ref,
			Hashes: &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: sum}}}
		if len(licenses) > 0 {
			ls := cdx.Licenses{}
			for _, l := range licenses {
				ls = append(ls, cdx.LicenseChoice{License: &cdx.License{Name: l}})
			}
			c.Licenses = &ls
		}
		if input {
			c.Properties = &[]cdx.Property{{Name: "kiln:role", Value: "build input"}}
		}
		comps = append(comps, c)
		refs = append(refs, ref)
	}
	for _, p := range m.Packages {
		add(p.Name, p.Version, p.Arch, p.SHA256, p.Licenses, false)
	}
	for _, in := range m.Inputs {
		if in.Package != "" {
			add(in.Package, in.Version, m.Arch, in.SHA256, nil, true)
		}
	}
	bom.Components = &comps
	bom.Dependencies = &[]cdx.Dependency{{Ref: "image", Dependencies: &refs}}
	var buf bytes.Buffer
	if err := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON).SetPretty(true).Encode(bom); err != nil {
		return nil, fmt.Errorf("SBOM: %w", err)
	}
	return buf.Bytes(), nil
}

func writeSBOM(path string, m *Manifest) error {
	data, err := SBOM(m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write SBOM: %w", err)
	}
	return nil
}
