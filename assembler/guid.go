package assembler

import (
	"crypto/sha256"
	"fmt"
)

// stableGUID derives a GUID from the recipe's name and a purpose ("disk", "ESP", "data"), so that
// every build of a recipe gets the same disk and partition GUIDs (and a rebuilt image is
// byte-identical) while different recipes get different ones. The result is an RFC 9562 version 8
// (name-based, vendor-defined) UUID in its textual form.
func stableGUID(name, purpose string) string {
	sum := sha256.Sum256([]byte("kiln-guid\x00" + name + "\x00" + purpose))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
