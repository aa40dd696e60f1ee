package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnproject/kiln/assembler/uki"
)

// vm is a QEMU process whose serial port is the process's stdin/stdout.
type vm struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
	done  chan struct{}
	start time.Time
}

func startVM(t *testing.T, args ...string) *vm {
	t.Helper()
	qemu := needTool(t, "qemu-system-x86_64")
	base := []string{"-accel", "tcg", "-cpu", "max", "-m", "512", "-smp", "1", "-display", "none",
		"-serial", "stdio", "-monitor", "none", "-no-reboot"}
	v := &vm{t: t, cmd: exec.Command(qemu, append(base, args...)...), done: make(chan struct{})}
	var err error
	if v.in, err = v.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	v.cmd.Stdout, v.cmd.Stderr = pw, pw
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	v.start = time.Now()
	go func() {
		err := v.cmd.Wait()
		pw.CloseWithError(fmt.Errorf("qemu exited: %v", err))
	}()
	go func() {
		defer close(v.done)
		buf := make([]byte, 4096)
		for {
			n, err := pr.Read(buf)
			v.mu.Lock()
			v.out.Write(buf[:n])
			v.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = v.cmd.Process.Kill()
		<-v.done
		if t.Failed() {
			t.Logf("serial console:\n%s", v.tail(6000))
		}
	})
	return v
}

func (v *vm) tail(n int) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	b := v.out.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// wait returns once re matches the serial output after offset from, failing the test at timeout.
func (v *vm) wait(re string, from int, timeout time.Duration) int {
	v.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		v.mu.Lock()
		b := v.out.Bytes()
		loc := rx.FindIndex(b[min(from, len(b)):])
		v.mu.Unlock()
		if loc != nil {
			return from + loc[1]
		}
		select {
		case <-v.done:
			v.t.Fatalf("qemu exited before %q appeared", re)
		default:
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("%q did not appear on the serial console within %v", re, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (v *vm) send(s string) {
	if _, err := io.WriteString(v.in, s); err != nil {
		v.t.Fatalf("serial input: %v", err)
	}
}

func bootSpec(t *testing.T, k kernelInputs) Spec {
	s := fullSpec(t)
	s.Kernel = k.modules
	s.Agent = File{} // no agent: the supervisor idles
	s.Extra = append(s.Extra, File{Path: "etc/init.d/S50hello", Mode: 0o755,
		Data: []byte("#!/bin/sh\n[ \"$1\" = start ] && echo \"hello from S50: $(cat /etc/motd)\"\n")})
	return s
}

const readyRE = `(?m)^kiln: ready name=kiln-tiny version=1\.2\.3 hostname=kiln-test\r?$`

// TestBootDirect boots the real Debian kernel with the initramfs (no disk, a virtio NIC on QEMU's
// user network), waits for the ready line and logs in on the serial console as the recipe's user.
func TestBootDirect(t *testing.T) {
	k := kernel(t)
	r, err := Build(context.Background(), bootSpec(t, k))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kpath, ipath := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	os.WriteFile(kpath, k.vmlinuz, 0o644)
	os.WriteFile(ipath, r.Data, 0o644)
	v := startVM(t, "-kernel", kpath, "-initrd", ipath, "-append", "console=ttyS0",
		"-nic", "user,model=virtio-net-pci")
	at := v.wait(`hello from S50: hello`, 0, 120*time.Second) // a service from the recipe's files
	at = v.wait(readyRE, at, 120*time.Second)
	t.Logf("ready line after %v", time.Since(v.start).Round(time.Second))
	v.wait(`no data partition labelled KILN-DATA`, 0, time.Second)
	v.wait(`eth0 10\.0\.2\.15/`, 0, 30*time.Second)

	at = v.wait(`kiln-test login: $`, at, 60*time.Second)
	v.send("alice\n")
	at = v.wait(`Password: $`, at, 30*time.Second)
	v.send(testPassword + "\n")
	at = v.wait(`alice@kiln-test:~\$ `, at, 30*time.Second)
	v.send("echo \"id=$(id -u):$(id -g) tz=$TZ mode=$(stat -c %a%U ~/.ssh ~/.ssh/authorized_keys | tr '\\n' ,) date=$(date +%Z)\"\n")
	v.wait(`id=1000:1000 tz=CET-1CEST,M3\.5\.0,M10\.5\.0/3 mode=700alice,600alice, date=CES?T`, at, 30*time.Second)

	// root is locked: the recipe gives root no password.
	v.send("exit\n")
	at = v.wait(`kiln-test login: $`, at, 30*time.Second)
	v.send("root\n")
	at = v.wait(`Password: $`, at, 30*time.Second)
	v.send("\n")
	// busybox login refuses ("Login incorrect", or "bad salt" for the "*" of a locked account)
	// and getty asks again; no root shell appears.
	at = v.wait(`(Login incorrect|bad salt)`, at, 30*time.Second)
	v.wait(`kiln-test login: $`, at, 30*time.Second)
	if strings.Contains(v.tail(400), "root@kiln-test") {
		t.Error("root logged in without a password")
	}
}

// TestBootUKI boots a UKI made of systemd's stub, the kernel and the initramfs under OVMF from a
// GPT disk (ESP with EFI/BOOT/BOOTX64.EFI, and a data partition labelled KILN-DATA).
func TestBootUKI(t *testing.T) {
	const ovmf = "/usr/share/ovmf/OVMF.fd"
	if _, err := os.Stat(ovmf); err != nil {
		skipOrFail(t, "OVMF not installed (package ovmf): %v", err)
	}
	for _, tool := range []string{"mkfs.vfat", "mcopy", "mmd", "sgdisk"} {
		needTool(t, tool)
	}
	k := kernel(t)
	stub, err := openDeb(t, "systemd-boot-efi_*.deb").ReadFile("usr/lib/systemd/boot/efi/linuxx64.efi.stub")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Build(context.Background(), bootSpec(t, k))
	if err != nil {
		t.Fatal(err)
	}
	img, err := uki.Build(uki.Input{Stub: stub, Kernel: k.vmlinuz, Initrd: r.Data,
		Cmdline: "console=tty0 console=ttyS0,115200", OSRelease: "ID=kiln\nVERSION_ID=1.2.3\n", Uname: k.modules.Release})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	ukiPath := filepath.Join(dir, "uki.efi")
	os.WriteFile(ukiPath, img, 0o644)
	esp, data, disk := filepath.Join(dir, "esp.fat"), filepath.Join(dir, "data.fat"), filepath.Join(dir, "disk.img")
	run("mkfs.vfat", "-C", "-n", "KILN-ESP", esp, "65536") // 64 MiB
	run("mmd", "-i", esp, "::/EFI", "::/EFI/BOOT")
	run("mcopy", "-i", esp, ukiPath, "::/EFI/BOOT/BOOTX64.EFI")
	run("mkfs.vfat", "-C", "-n", "KILN-DATA", data, "8192") // 8 MiB
	f, _ := os.Create(disk)
	f.Truncate(80 << 20)
	f.Close()
	run("sgdisk", "-n", "1:2048:+64M", "-t", "1:ef00", "-c", "1:ESP", "-n", "2:133120:+8M", "-t", "2:0700", "-c", "2:KILN-DATA", disk)
	run("dd", "if="+esp, "of="+disk, "bs=512", "seek=2048", "conv=notrunc", "status=none")
	run("dd", "if="+data, "of="+disk, "bs=512", "seek=133120", "conv=notrunc", "status=none")

	v := startVM(t, "-bios", ovmf, "-drive", "file="+disk+",format=raw,if=virtio,snapshot=on", "-nic", "none")
	v.wait(readyRE, 0, 180*time.Second)
	t.Logf("ready line after %v", time.Since(v.start).Round(time.Second))
	v.wait(`data partition /dev/vda2 mounted on /data`, 0, time.Second)
	v.wait(`EFI system partition /dev/vda1 mounted on /boot/efi`, 0, time.Second)
	if strings.Contains(v.tail(1<<20), "Overlapping PE sections") {
		t.Error("systemd-stub complains about the section layout")
	}
}
