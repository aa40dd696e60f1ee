package customise_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnproject/kiln/assembler/recipe"
	"github.com/kilnproject/kiln/flasher/customise"
	"github.com/kilnproject/kiln/flasher/customise/customisetest"
	"github.com/kilnproject/kiln/internal/testenv"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHl0eJ7GpKx6ZQm4R4Hc0m2lJ7c4yO7nQ6Xh0b2J5s9B alice@laptop"

// sampleSettings is what a user sets in the form: every kind of setting.
func sampleSettings() customise.Settings {
	return customise.Settings{
		Hostname: "pi-kitchen",
		Timezone: "Europe/Berlin",
		Keyboard: "de",
		Users: []recipe.User{{Name: "alice", PasswordHash: "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/",
			SSHKeys: []string{testKey}}},
		WiFi:       &recipe.WiFi{SSID: "Kitchen Net", PSK: "correct horse battery", Country: "DE"},
		WiFiHidden: true,
	}
}

func TestCheckRefusesBadSettings(t *testing.T) {
	for name, tc := range map[string]struct {
		mod  func(*customise.Settings)
		want string
	}{
		"hostname":  {func(s *customise.Settings) { s.Hostname = "bad_host!" }, "system.hostname"},
		"hash":      {func(s *customise.Settings) { s.Users[0].PasswordHash = "hunter22" }, "never put a plain password"},
		"key":       {func(s *customise.Settings) { s.Users[0].SSHKeys = []string{"-----BEGIN OPENSSH PRIVATE KEY-----"} }, "private key"},
		"psk":       {func(s *customise.Settings) { s.WiFi.PSK = "short" }, "PSK of 5 characters"},
		"country":   {func(s *customise.Settings) { s.WiFi.Country = "Germany" }, "two-letter"},
		"timezone":  {func(s *customise.Settings) { s.Timezone = "Mars/Olympus" }, "unknown timezone"},
		"keyboard":  {func(s *customise.Settings) { s.Keyboard = "de; rm -rf" }, "XKB layout"},
		"format":    {func(s *customise.Settings) { s.Format = "ignition" }, "init format"},
		"notconfig": {func(s *customise.Settings) { s.UserData = []byte("#!/bin/sh\necho hi\n") }, "not #cloud-config"},
		"badyaml":   {func(s *customise.Settings) { s.UserData = []byte("#cloud-config\nusers: [\n") }, "not valid YAML"},
	} {
		t.Run(name, func(t *testing.T) {
			s := sampleSettings()
			tc.mod(&s)
			_, err := customise.New(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "correct horse") {
				t.Fatalf("the error shows the PSK: %v", err)
			}
		})
	}
	if _, err := customise.New(customise.Settings{}); err == nil {
		t.Fatal("empty settings accepted")
	}
}

// TestLocate compares the partition found with what sfdisk reads from the same table.
func TestLocate(t *testing.T) {
	sfdisk := testenv.Tool(t, "sfdisk")
	dir := t.TempDir()
	for _, k := range []customisetest.Kind{customisetest.RaspiOS, customisetest.Ubuntu, customisetest.NoCloud} {
		im := customisetest.Make(t, dir, k)
		head := readHead(t, im.Path)
		p, err := customise.Locate(head)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		out, err := exec.Command(sfdisk, "-J", im.Path).Output()
		if err != nil {
			t.Fatal(err)
		}
		var pt struct {
			PartitionTable struct {
				Label      string
				Partitions []struct{ Start, Size int64 }
			}
		}
		if err := json.Unmarshal(out, &pt); err != nil {
			t.Fatal(err)
		}
		first := pt.PartitionTable.Partitions[0]
		if p.Number != 1 || p.Offset != first.Start*512 || p.Size != first.Size*512 || p.Table != map[string]string{"dos": "mbr", "gpt": "gpt"}[pt.PartitionTable.Label] {
			t.Errorf("%s: located %+v, sfdisk says %+v (%s)", k, p, first, pt.PartitionTable.Label)
		}
	}
	// A GPT with an EFI system partition first and a NoCloud seed named CIDATA: the seed is chosen.
	seeded := filepath.Join(dir, "seeded.img")
	os.WriteFile(seeded, nil, 0o644)
	os.Truncate(seeded, 80<<20)
	if out, err := exec.Command(testenv.Tool(t, "sgdisk"), "-n", "1:2048:65535", "-t", "1:ef00", "-c", "1:EFI",
		"-n", "2:65536:131071", "-t", "2:0700", "-c", "2:CIDATA", seeded).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v %s", err, out)
	}
	if p, err := customise.Locate(readHead(t, seeded)); err != nil || p.Number != 2 || p.Offset != 65536*512 || p.Size != 65536*512 {
		t.Errorf("GPT with a seed: located %+v, %v; want partition 2", p, err)
	}
	if _, err := customise.Locate(make([]byte, 4096)); err == nil {
		t.Error("an image without a partition table was located")
	}
}

func readHead(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, customise.ProbeSize)
	n, _ := io.ReadFull(f, head)
	return head[:n]
}

// extract copies an image's boot partition to a file of its own, as the flasher does.
func extract(t *testing.T, im customisetest.Image) *os.File {
	t.Helper()
	src, err := os.Open(im.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "boot.fat"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := io.Copy(f, io.NewSectionReader(src, im.BootOffset, im.BootSize)); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestApplyWritesCloudInit(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		kind   customisetest.Kind
		format string
	}{
		{customisetest.RaspiOS, "cloudinit-rpi"},
		{customisetest.Ubuntu, "cloudinit"},
		{customisetest.NoCloud, "cloudinit"},
		{customisetest.Seed16, "cloudinit"},
		{customisetest.Boot12, "cloudinit"},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			im := customisetest.Make(t, dir, tc.kind)
			c, err := customise.New(sampleSettings())
			if err != nil {
				t.Fatal(err)
			}
			f := extract(t, im)
			changed, note, err := c.Apply(context.Background(), f, im.BootSize)
			if err != nil || !changed {
				t.Fatalf("changed %v, note %q, error %v", changed, note, err)
			}
			if !strings.Contains(note, tc.format) {
				t.Errorf("note %q does not name format %s", note, tc.format)
			}
			files := customisetest.Check(t, f.Name(), im)
			ud := files["user-data"]
			for _, want := range []string{"#cloud-config", "hostname: pi-kitchen", "timezone: Europe/Berlin", "layout: de", "name: alice",
				"passwd: $6$saltsalt$", testKey, "ssh_pwauth: true", "lock_passwd: false"} {
				if !strings.Contains(ud, want) {
					t.Errorf("user-data lacks %q:\n%s", want, ud)
				}
			}
			if strings.Contains(ud, "password: ubuntu") {
				t.Errorf("the image's default user-data survived:\n%s", ud)
			}
			if rpi := strings.Contains(ud, "do_wifi_country") && strings.Contains(ud, "- DE"); rpi != (tc.format == "cloudinit-rpi") {
				t.Errorf("Wi-Fi country set by raspi-config: %v, format %s", rpi, tc.format)
			}
			if rpi := strings.Contains(ud, "systemctl"); rpi != (tc.format == "cloudinit-rpi") {
				t.Errorf("SSH enabled by runcmd: %v, format %s", rpi, tc.format)
			}
			if !strings.Contains(files["meta-data"], "instance-id: kiln-") || !strings.Contains(files["meta-data"], "local-hostname: pi-kitchen") {
				t.Errorf("meta-data:\n%s", files["meta-data"])
			}
			gen := customisetest.Netplan(t, files["network-config"])
			for _, want := range []string{"Kitchen Net", "DE"} {
				if !strings.Contains(gen, want) {
					t.Errorf("netplan's output lacks %q:\n%s", want, gen)
				}
			}
			if !strings.Contains(files["network-config"], "hidden: true") || !strings.Contains(files["network-config"], "regulatory-domain: DE") {
				t.Errorf("network-config:\n%s", files["network-config"])
			}
		})
	}
}

func TestKeysOnlyTurnsPasswordLoginOff(t *testing.T) {
	im := customisetest.Make(t, t.TempDir(), customisetest.Ubuntu)
	c, err := customise.New(customise.Settings{Users: []recipe.User{{Name: "ops", SSHKeys: []string{testKey}}}})
	if err != nil {
		t.Fatal(err)
	}
	f := extract(t, im)
	if changed, note, err := c.Apply(context.Background(), f, im.BootSize); err != nil || !changed {
		t.Fatal(note, err)
	}
	files := customisetest.Check(t, f.Name(), im)
	for _, want := range []string{"ssh_pwauth: false", "lock_passwd: true", testKey} {
		if !strings.Contains(files["user-data"], want) {
			t.Errorf("user-data lacks %q:\n%s", want, files["user-data"])
		}
	}
	// Without Wi-Fi the image's own network-config stays.
	if files["network-config"] != string(im.Files["network-config"]) {
		t.Errorf("network-config changed without Wi-Fi settings:\n%s", files["network-config"])
	}
}

func TestUserDataReplacedOrMerged(t *testing.T) {
	own := "#cloud-config\n# mine\nhostname: from-file\npackages: [htop]\nusers:\n  - name: bob\n    ssh_authorized_keys: [\"" + testKey + "\"]\nruncmd:\n  - [touch, /etc/from-file]\n"
	t.Run("replace", func(t *testing.T) {
		im := customisetest.Make(t, t.TempDir(), customisetest.RaspiOS)
		c, err := customise.New(customise.Settings{UserData: []byte(own)})
		if err != nil {
			t.Fatal(err)
		}
		f := extract(t, im)
		if changed, note, err := c.Apply(context.Background(), f, im.BootSize); err != nil || !changed {
			t.Fatal(note, err)
		}
		if files := customisetest.Check(t, f.Name(), im); files["user-data"] != own {
			t.Fatalf("user-data is not the file as given:\n%s", files["user-data"])
		}
	})
	t.Run("merge", func(t *testing.T) {
		im := customisetest.Make(t, t.TempDir(), customisetest.RaspiOS)
		s := sampleSettings()
		s.UserData = []byte(own)
		c, err := customise.New(s)
		if err != nil {
			t.Fatal(err)
		}
		f := extract(t, im)
		if changed, note, err := c.Apply(context.Background(), f, im.BootSize); err != nil || !changed {
			t.Fatal(note, err)
		}
		ud := customisetest.Check(t, f.Name(), im)["user-data"]
		// The file's hostname wins; users and runcmd are Kiln's then the file's; new keys are kept.
		for _, want := range []string{"hostname: from-file", "name: alice", "name: bob", "htop", "/etc/from-file", "systemctl", "timezone: Europe/Berlin"} {
			if !strings.Contains(ud, want) {
				t.Errorf("merged user-data lacks %q:\n%s", want, ud)
			}
		}
		if strings.Contains(ud, "pi-kitchen\n") && strings.Contains(ud, "hostname: pi-kitchen") {
			t.Errorf("Kiln's hostname was kept over the file's:\n%s", ud)
		}
		if strings.Count(ud, "#cloud-config") != 1 || !strings.HasPrefix(ud, "#cloud-config\n") {
			t.Errorf("not one #cloud-config header:\n%s", ud)
		}
		if strings.Index(ud, "name: alice") > strings.Index(ud, "name: bob") {
			t.Errorf("users not in order Kiln's, file's:\n%s", ud)
		}
	})
}

// TestUnknownFormatsUnchanged: images Kiln cannot customise come back byte for byte, with a note.
func TestUnknownFormatsUnchanged(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		kind   customisetest.Kind
		format string
		want   string
	}{
		{customisetest.Plain, "", "no cloud-init files"},
		{customisetest.Ubuntu, "none", "takes no first-boot settings"},
	} {
		t.Run(string(tc.kind)+"-"+tc.format, func(t *testing.T) {
			im := customisetest.Make(t, dir, tc.kind)
			s := sampleSettings()
			s.Format = tc.format
			c, err := customise.New(s)
			if err != nil {
				t.Fatal(err)
			}
			_, n, note, err := c.Locate(readHead(t, im.Path))
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				if !strings.Contains(note, tc.want) {
					t.Fatalf("note %q, want %q", note, tc.want)
				}
				return
			}
			f := extract(t, im)
			before := sum(t, f)
			changed, note, err := c.Apply(context.Background(), f, im.BootSize)
			if err != nil || changed || !strings.Contains(note, tc.want) || !strings.Contains(note, "unchanged") {
				t.Fatalf("changed %v, note %q, error %v", changed, note, err)
			}
			if sum(t, f) != before {
				t.Fatal("the partition changed")
			}
		})
	}
}

func sum(t *testing.T, f *os.File) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<40)); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}
