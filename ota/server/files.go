package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/kilnproject/kiln/catalog"
	"github.com/kilnproject/kiln/ota"
	"github.com/kilnproject/kiln/ota/repo"
)

// repoFS serves the repository directory through an os.Root, so no request path (.., symlinks)
// leaves it, and caches the decoded targets until timestamp.json changes.
type repoFS struct {
	dir  string
	root *os.Root

	mu      sync.Mutex
	stamp   string // timestamp.json size+mtime the cache belongs to
	cached  []ota.Target
	rootRaw []byte
}

func openRepoFS(dir string) (*repoFS, error) {
	if _, err := repo.Load(dir); err != nil {
		return nil, fmt.Errorf("update server: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("update server: open repository %s: %w", dir, err)
	}
	return &repoFS{dir: dir, root: root}, nil
}

func (f *repoFS) targets() ([]ota.Target, error) {
	fi, err := f.root.Stat("metadata/timestamp.json")
	if err != nil {
		return nil, err
	}
	stamp := fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	f.mu.Lock()
	defer f.mu.Unlock()
	if stamp == f.stamp {
		return f.cached, nil
	}
	r, err := repo.Load(f.dir)
	if err != nil {
		return nil, err
	}
	ts, err := r.List()
	if err != nil {
		return nil, err
	}
	f.stamp, f.cached, f.rootRaw = stamp, ts, r.RootJSON
	return ts, nil
}

func (f *repoFS) rootJSON() []byte {
	f.mu.Lock()
	raw := f.rootRaw
	f.mu.Unlock()
	if raw == nil {
		raw, _ = f.root.ReadFile("metadata/root.json")
	}
	return raw
}

// serveCatalog serves the repository's OS catalogue (Raspberry Pi Imager's schema) with the
// image URLs made absolute against the address the client used, as Imager expects them.
func (s *Server) serveCatalog(w http.ResponseWriter, r *http.Request) {
	data, err := s.fs.root.ReadFile(repo.CatalogFile)
	if errors.Is(err, fs.ErrNotExist) {
		httpError(w, http.StatusNotFound, "this repository lists no disk images yet: publish a build with kiln publish")
		return
	}
	var doc *catalog.Document
	if err == nil {
		doc, err = catalog.ReadDocument(data)
	}
	if err == nil {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		host := r.Host
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && host == "" { // HTTP/1.0
			host = a.String()
		}
		data, err = doc.Absolute(&url.URL{Scheme: scheme, Host: host, Path: "/"}).Marshal()
	}
	if err != nil {
		s.log.WithError(err).Warn("update server: " + repo.CatalogFile)
		http.Error(w, "cannot read the catalogue", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(data)
}

// serveFile serves GET/HEAD of metadata/, targets/ and images/ files with Range, If-Range and ETag.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	dir, base := path.Split(name)
	if (dir != "metadata/" && dir != "targets/" && dir != repo.ImagesDir+"/") || base == "" || strings.HasPrefix(base, ".") {
		http.NotFound(w, r)
		return
	}
	f, err := s.fs.root.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) || strings.Contains(err.Error(), "escapes") {
			http.NotFound(w, r)
			return
		}
		s.log.WithError(err).Warn("update server: open " + name)
		http.Error(w, "cannot read file", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	if dir == "targets/" {
		// Content addressed: "<sha256>.<file>" never changes.
		sum, _, _ := strings.Cut(base, ".")
		h.Set("ETag", `"`+sum+`"`)
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
		h.Set("Content-Type", "application/octet-stream")
	} else {
		h.Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.Size(), fi.ModTime().UnixNano()))
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Type", "application/json")
		if dir != "metadata/" { // disk images and their block maps
			h.Set("Content-Type", "application/octet-stream")
		}
	}
	// Allow slow links: a deadline proportional to the size instead of the API timeout.
	d := time.Minute + time.Duration(fi.Size()/minRate)*time.Second
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
	http.ServeContent(w, r, base, fi.ModTime(), f)
}
