package assembler

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/assembler/archive"
	"github.com/kilnproject/kiln/assembler/fstree"
	"github.com/kilnproject/kiln/internal/atomicfile"
)

// configuredFormat versions the cache of configured package trees: change it when unpacking or
// configuring changes what a tree holds.
const configuredFormat = "kiln-configured-2"

var errNotCached = errors.New("not in the cache")

// configuredKey names a configured package tree: the package set (name, architecture, sha256)
// and SOURCE_DATE_EPOCH determine it.
func configuredKey(list []archive.LockedPackage, epoch int64) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%d\n", configuredFormat, epoch)
	for _, p := range list {
		fmt.Fprintf(h, "%s %s %s\n", p.Name, p.Arch, p.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (b *builder) configuredPath(key string) string {
	return filepath.Join(b.opts.Cache, "configured", key)
}

// configuredMeta is the cache entry's description, beside its tar archive.
type configuredMeta struct {
	Format   string        `json:"format"`
	TarSHA   string        `json:"tar_sha256"`
	Packages []PackageInfo `json:"packages"`
}

// saveConfigured keeps a configured tree (owners, modes, origins) and the packages' manifest
// entries, so a rebuild of the same package set skips unpacking and the maintainer scripts. A
// failure only costs the next build time: it is logged.
func (b *builder) saveConfigured(key string, t *fstree.Tree, infos []PackageInfo) {
	start := time.Now()
	if err := func() error {
		base := b.configuredPath(key)
		if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
			return err
		}
		tmp, err := os.CreateTemp(filepath.Dir(base), ".tar-*")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		h := sha256.New()
		bw := bufio.NewWriterSize(io.MultiWriter(tmp, h), 1<<20)
		tw := tar.NewWriter(bw)
		mtime := time.Unix(b.opts.SourceDateEpoch, 0)
		for _, n := range t.Sorted() {
			if n.Path == "" {
				continue
			}
			hdr := &tar.Header{Name: n.Path, Mode: int64(n.Mode.Perm()), Uid: n.UID, Gid: n.GID, ModTime: mtime,
				Format: tar.FormatPAX, PAXRecords: map[string]string{"KILN.origin": n.Origin}}
			if n.Mode&fs.ModeSetuid != 0 {
				hdr.Mode |= 0o4000
			}
			if n.Mode&fs.ModeSetgid != 0 {
				hdr.Mode |= 0o2000
			}
			if n.Mode&fs.ModeSticky != 0 {
				hdr.Mode |= 0o1000
			}
			switch {
			case n.IsDir():
				hdr.Typeflag = tar.TypeDir
			case n.IsSymlink():
				hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, n.Target
			case n.IsRegular():
				hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(n.Data))
			default:
				continue // configured trees hold no devices (dpkgconf leaves them out)
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := tw.Write(n.Data); err != nil {
				return err
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := tmp.Close(); err != nil {
			return err
		}
		meta, err := json.Marshal(configuredMeta{Format: configuredFormat, TarSHA: hex.EncodeToString(h.Sum(nil)), Packages: infos})
		if err != nil {
			return err
		}
		if err := os.Rename(tmp.Name(), base+".tar"); err != nil {
			return err
		}
		return atomicfile.Write(base+".json", meta, 0o644)
	}(); err != nil {
		b.log.WithError(err).Warn("configured packages not cached")
		return
	}
	b.log.WithFields(logrus.Fields{"key": key, "seconds": time.Since(start).Seconds()}).Debug("configured packages cached")
}

// loadConfigured reads a configured tree saved by saveConfigured, checking the archive against
// the checksum recorded with it.
func (b *builder) loadConfigured(key string) (*fstree.Tree, []PackageInfo, error) {
	base := b.configuredPath(key)
	data, err := os.ReadFile(base + ".json")
	if err != nil {
		return nil, nil, errNotCached
	}
	var meta configuredMeta
	if err := json.Unmarshal(data, &meta); err != nil || meta.Format != configuredFormat {
		return nil, nil, errNotCached
	}
	start := time.Now()
	t, err := readConfigured(base+".tar", meta.TarSHA, b.r.Board.Layout().DiskSize)
	if err != nil {
		b.log.WithError(err).Warn("cached configured packages unusable: configuring again")
		return nil, nil, err
	}
	b.log.WithFields(logrus.Fields{"key": key, "seconds": time.Since(start).Seconds()}).Info("configured packages from the cache")
	return t, meta.Packages, nil
}

func readConfigured(file, wantSHA string, limit int64) (*fstree.Tree, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	tee := io.TeeReader(bufio.NewReaderSize(f, 1<<20), h)
	tr := tar.NewReader(tee)
	t := fstree.New()
	t.Replace = true
	t.Limits = fstree.Limits{File: limit, Total: limit, Entries: maxEntries}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		origin := hdr.PAXRecords["KILN.origin"]
		perm := fs.FileMode(hdr.Mode).Perm()
		if hdr.Mode&0o4000 != 0 {
			perm |= fs.ModeSetuid
		}
		if hdr.Mode&0o2000 != 0 {
			perm |= fs.ModeSetgid
		}
		if hdr.Mode&0o1000 != 0 {
			perm |= fs.ModeSticky
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = t.AddDir(hdr.Name, perm, origin)
		case tar.TypeSymlink:
			err = t.AddSymlink(hdr.Name, hdr.Linkname, origin)
		case tar.TypeReg:
			if hdr.Size < 0 || hdr.Size > limit {
				return nil, fmt.Errorf("%s: %s: size %d", file, hdr.Name, hdr.Size)
			}
			data := make([]byte, hdr.Size)
			if _, err = io.ReadFull(tr, data); err == nil {
				err = t.AddFile(hdr.Name, data, perm, origin)
			}
		default:
			err = fmt.Errorf("unexpected entry type %c", hdr.Typeflag)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", file, hdr.Name, err)
		}
		if n := t.Get(hdr.Name); n != nil {
			n.UID, n.GID = hdr.Uid, hdr.Gid
		}
	}
	if _, err := io.Copy(io.Discard, tee); err != nil { // the rest (tar padding) counts for the checksum
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != wantSHA {
		return nil, fmt.Errorf("%s: checksum mismatch", file)
	}
	return t, nil
}
