package recipe

import "testing"

func TestBIOSFirmwareAndISOOutput(t *testing.T) {
	for _, fw := range []string{"bios", "hybrid", "uefi"} {
		r, err := Parse("kiln.toml", []byte("kiln = 1\nname = \"x\"\nversion = \"1.0.0\"\n[board]\nfirmware = \""+fw+"\"\n[outputs]\niso = true\n"))
		if err != nil {
			t.Fatalf("%s: %v", fw, err)
		}
		if !r.Outputs.ISO || r.Board.GRUB != "grub-pc-bin" {
			t.Errorf("%s: outputs %+v, grub %q", fw, r.Outputs, r.Board.GRUB)
		}
		if r.Board.BIOS() != (fw != "uefi") || r.Board.UEFI() != (fw != "bios") {
			t.Errorf("%s: BIOS() %v UEFI() %v", fw, r.Board.BIOS(), r.Board.UEFI())
		}
	}
	if Default().Outputs.ISO {
		t.Error("the default recipe writes an ISO")
	}
}
