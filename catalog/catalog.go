// Package catalog reads operating-system catalogues: Raspberry Pi Imager's repository JSON
// (os_list with nested subitems and subitems_url, devices and their tags) from a URL or a file.
// Everything in a catalogue is outside input: documents, nesting, item counts and the fetches of
// subitems_url are bounded, and items with malformed URLs, sizes or checksums are left out with a
// warning.
package catalog

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kilnproject/kiln/internal/stall"
)

// Limits on a catalogue.
const (
	MaxDocument = 16 << 20 // bytes of one JSON document
	MaxDepth    = 8        // nesting of subitems (inline or fetched)
	MaxFetches  = 64       // subitems_url documents fetched for one catalogue
	MaxItems    = 20000    // operating systems and folders in all
	fetchTime   = 60 * time.Second
)

// ErrCatalog is wrapped by the errors of a catalogue that cannot be read.
var ErrCatalog = errors.New("not a usable OS catalogue")

// OS is one operating system of a catalogue.
type OS struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Folder      []string `json:"folder,omitempty"` // the names of the folders it is listed under
	URL         string   `json:"url"`
	Icon        string   `json:"icon,omitempty"`
	Website     string   `json:"website,omitempty"`
	ReleaseDate string   `json:"release_date,omitempty"`
	// ExtractSize and ExtractSHA256 describe the uncompressed image; DownloadSize and
	// DownloadSHA256 the file as downloaded.
	ExtractSize    int64  `json:"extract_size,omitempty"`
	ExtractSHA256  string `json:"extract_sha256,omitempty"`
	DownloadSize   int64  `json:"image_download_size,omitempty"`
	DownloadSHA256 string `json:"image_download_sha256,omitempty"`
	// InitFormat is how the image takes first-boot settings: "systemd" (Raspberry Pi OS's
	// firstrun), "cloudinit", "cloudinit-rpi", or "" when unknown.
	InitFormat string `json:"init_format,omitempty"`
	// Devices are the device tags the image is for; empty means any device.
	Devices []string `json:"devices,omitempty"`
}

// Title is the name with the folders it is under.
func (o OS) Title() string { return strings.Join(append(slices.Clone(o.Folder), o.Name), " › ") }

// Device is a device class a catalogue offers images for.
type Device struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Icon        string   `json:"icon,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	Default     bool     `json:"default,omitempty"`
	// Matching is Imager's matching_type: "exclusive" lists only images tagged for the device,
	// "inclusive" (the default) also those tagged for no device.
	Matching string `json:"matching_type,omitempty"`
}

// Catalog is a flattened catalogue.
type Catalog struct {
	Source   string   `json:"source"`
	Devices  []Device `json:"devices,omitempty"`
	OS       []OS     `json:"os"`
	Warnings []string `json:"warnings,omitempty"`
}

// Options control Load.
type Options struct {
	Client *http.Client
	// NoFetch leaves subitems_url folders out instead of fetching them.
	NoFetch bool
}

// The JSON schema (the fields Kiln uses).
type document struct {
	Imager *struct {
		Devices []Device `json:"devices"`
	} `json:"imager"`
	OSList []item `json:"os_list"`
}

type item struct {
	Name           string          `json:"name"`
	Description    string          `json:"description"`
	URL            string          `json:"url"`
	Icon           string          `json:"icon"`
	Website        string          `json:"website"`
	ReleaseDate    string          `json:"release_date"`
	ExtractSize    json.Number     `json:"extract_size"`
	ExtractSHA256  string          `json:"extract_sha256"`
	DownloadSize   json.Number     `json:"image_download_size"`
	DownloadSHA256 string          `json:"image_download_sha256"`
	InitFormat     string          `json:"init_format"`
	Devices        []string        `json:"devices"`
	Subitems       json.RawMessage `json:"subitems"`
	SubitemsURL    string          `json:"subitems_url"`
}

// loader carries the state of one Load.
type loader struct {
	ctx     context.Context
	opts    Options
	cat     *Catalog
	fetches int
	items   int
	root    string // the directory of a local catalogue: files under it may be read
}

// Load reads the catalogue at src: an http(s) URL or a file. Folders given by subitems_url are
// fetched (relative URLs against the document's own), up to MaxDepth levels and MaxFetches
// documents.
func Load(ctx context.Context, src string, opts Options) (*Catalog, error) {
	l := &loader{ctx: ctx, opts: opts, cat: &Catalog{Source: src}}
	if l.opts.Client == nil {
		l.opts.Client = http.DefaultClient
	}
	data, base, err := l.read(src)
	if err != nil {
		return nil, err
	}
	if err := l.parse(data, base, nil, 0); err != nil {
		return nil, fmt.Errorf("catalogue %s: %w", src, err)
	}
	return l.cat, nil
}

// Parse reads a catalogue document without fetching its subitems_url folders.
func Parse(data []byte) (*Catalog, error) {
	l := &loader{ctx: context.Background(), opts: Options{NoFetch: true}, cat: &Catalog{}}
	if err := l.parse(data, nil, nil, 0); err != nil {
		return nil, err
	}
	return l.cat, nil
}

// read returns the document at src (a URL or a path) and its URL for resolving relative links.
func (l *loader) read(src string) ([]byte, *url.URL, error) {
	if !strings.HasPrefix(src, "http://") && !strings.HasPrefix(src, "https://") {
		f, err := os.Open(src)
		if err != nil {
			return nil, nil, fmt.Errorf("catalogue %s: %w", src, err)
		}
		defer f.Close()
		data, err := readLimited(f)
		if err != nil {
			return nil, nil, fmt.Errorf("catalogue %s: %w", src, err)
		}
		abs, err := filepath.Abs(src)
		if err != nil {
			return data, nil, nil
		}
		if l.root == "" { // a local catalogue may refer to documents beside it
			l.root = filepath.Dir(abs)
		}
		return data, &url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}, nil
	}
	u, err := url.Parse(src)
	if err != nil || u.Host == "" {
		return nil, nil, fmt.Errorf("catalogue %s: %w: not a valid URL", src, ErrCatalog)
	}
	ctx, cancel := context.WithTimeout(l.ctx, fetchTime)
	defer cancel()
	ctx, wd := stall.Watch(ctx, 20*time.Second, 1)
	defer wd.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("catalogue %s: %w", src, err)
	}
	resp, err := l.opts.Client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("catalogue %s: %w", src, wd.Err(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("catalogue %s: the server answered %s", src, resp.Status)
	}
	data, err := readLimited(wd.Reader(resp.Body))
	if err != nil {
		return nil, nil, fmt.Errorf("catalogue %s: %w", src, err)
	}
	return data, resp.Request.URL, nil
}

func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxDocument+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxDocument {
		return nil, fmt.Errorf("%w: larger than %d MiB", ErrCatalog, MaxDocument>>20)
	}
	return data, nil
}

// parse reads a document: an object with os_list (and imager.devices at the top), or a bare
// list of items (some subitems_url documents are).
func (l *loader) parse(data []byte, base *url.URL, folder []string, depth int) error {
	var doc document
	trimmed := strings.TrimSpace(string(data[:min(len(data), 64)]))
	if strings.HasPrefix(trimmed, "[") {
		if err := json.Unmarshal(data, &doc.OSList); err != nil {
			return fmt.Errorf("%w: %w", ErrCatalog, err)
		}
	} else {
		if err := json.Unmarshal(data, &doc); err != nil {
			return fmt.Errorf("%w: %w", ErrCatalog, err)
		}
		if doc.OSList == nil {
			return fmt.Errorf("%w: no os_list (is this Raspberry Pi Imager's repository JSON?)", ErrCatalog)
		}
	}
	if depth == 0 && doc.Imager != nil {
		for _, d := range doc.Imager.Devices {
			if d.Name == "" || len(l.cat.Devices) >= 1000 {
				continue
			}
			d.Icon = resolve(base, d.Icon)
			l.cat.Devices = append(l.cat.Devices, d)
		}
	}
	return l.list(doc.OSList, base, folder, depth)
}

func (l *loader) list(list []item, base *url.URL, folder []string, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("%w: folders nested deeper than %d levels", ErrCatalog, MaxDepth)
	}
	for _, it := range list {
		if err := l.ctx.Err(); err != nil {
			return err
		}
		l.items++
		if l.items > MaxItems {
			return fmt.Errorf("%w: more than %d entries", ErrCatalog, MaxItems)
		}
		name := strings.TrimSpace(it.Name)
		if name == "" {
			l.warn("an entry without a name is left out")
			continue
		}
		sub := append(slices.Clone(folder), name)
		switch {
		case len(it.Subitems) > 0 && string(it.Subitems) != "null":
			var children []item
			if err := json.Unmarshal(it.Subitems, &children); err != nil {
				return fmt.Errorf("%w: %s: subitems: %w", ErrCatalog, name, err)
			}
			if err := l.list(children, base, sub, depth+1); err != nil {
				return err
			}
		case it.SubitemsURL != "":
			if l.opts.NoFetch {
				l.warn("%s: folder at %s not fetched", name, it.SubitemsURL)
				continue
			}
			if err := l.fetch(it.SubitemsURL, base, sub, depth+1); err != nil {
				l.warn("%s: %v", name, err)
			}
		default:
			o, err := convert(it, base, l.root)
			if err != nil {
				l.warn("%s: %v; left out", name, err)
				continue
			}
			o.Folder = folder
			l.cat.OS = append(l.cat.OS, o)
		}
	}
	return nil
}

func (l *loader) fetch(ref string, base *url.URL, folder []string, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("%w: folders nested deeper than %d levels", ErrCatalog, MaxDepth)
	}
	l.fetches++
	if l.fetches > MaxFetches {
		return fmt.Errorf("%w: more than %d subitems_url documents", ErrCatalog, MaxFetches)
	}
	u := resolve(base, ref)
	var data []byte
	var b *url.URL
	var err error
	switch pu, perr := url.Parse(u); {
	case perr == nil && pu.Scheme == "file" && l.root != "":
		p := filepath.Clean(filepath.FromSlash(pu.Path))
		if !strings.HasPrefix(p, l.root+string(filepath.Separator)) {
			return fmt.Errorf("subitems_url %q is outside the catalogue's directory", ref)
		}
		data, b, err = l.read(p)
	case strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://"):
		data, b, err = l.read(u)
	default:
		return fmt.Errorf("subitems_url %q is not an http(s) URL", ref)
	}
	if err != nil {
		return err
	}
	return l.parse(data, b, folder, depth)
}

func (l *loader) warn(format string, args ...any) {
	if len(l.cat.Warnings) < 100 {
		l.cat.Warnings = append(l.cat.Warnings, fmt.Sprintf(format, args...))
	}
}

// resolve makes ref absolute against base (when there is one).
func resolve(base *url.URL, ref string) string {
	if base == nil || ref == "" {
		return ref
	}
	u, err := base.Parse(ref)
	if err != nil {
		return ref
	}
	return u.String()
}

// convert checks an image entry. In a local catalogue (root set), a relative url naming a file
// under the catalogue's directory (as in a kiln publish repository) becomes that file's path.
func convert(it item, base *url.URL, root string) (OS, error) {
	o := OS{Name: strings.TrimSpace(it.Name), Description: it.Description, Icon: resolve(base, it.Icon),
		Website: it.Website, ReleaseDate: it.ReleaseDate, InitFormat: it.InitFormat}
	o.URL = resolve(base, strings.TrimSpace(it.URL))
	u, err := url.Parse(o.URL)
	switch {
	case err == nil && u.Scheme == "file" && root != "":
		p := filepath.Clean(filepath.FromSlash(u.Path))
		if !strings.HasPrefix(p, root+string(filepath.Separator)) {
			return o, fmt.Errorf("url %q is outside the catalogue's directory", it.URL)
		}
		o.URL = p
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return o, fmt.Errorf("url %q is not an http(s) URL", it.URL)
	default:
		o.URL = u.String() // the scheme in lower case ("HTTPS://" is allowed), as the downloader expects
	}
	if o.ExtractSize, err = size(it.ExtractSize); err != nil {
		return o, fmt.Errorf("extract_size: %w", err)
	}
	if o.DownloadSize, err = size(it.DownloadSize); err != nil {
		return o, fmt.Errorf("image_download_size: %w", err)
	}
	if o.ExtractSHA256, err = sha(it.ExtractSHA256); err != nil {
		return o, fmt.Errorf("extract_sha256: %w", err)
	}
	if o.DownloadSHA256, err = sha(it.DownloadSHA256); err != nil {
		return o, fmt.Errorf("image_download_sha256: %w", err)
	}
	for _, d := range it.Devices {
		if d = strings.TrimSpace(d); d != "" && len(o.Devices) < 100 {
			o.Devices = append(o.Devices, d)
		}
	}
	return o, nil
}

func size(n json.Number) (int64, error) {
	if n == "" {
		return 0, nil
	}
	v, err := n.Int64()
	if err != nil || v < 0 || v > 1<<50 {
		return 0, fmt.Errorf("%q is not a size in bytes", n.String())
	}
	return v, nil
}

func sha(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "", nil
	}
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		return "", fmt.Errorf("%q is not a sha256", s)
	}
	return s, nil
}

// Filter returns the images for a device (a device name or tag, or a tag prefix such as "pi4";
// "" for all) whose name, folder or description contains search (case-insensitive; "" for all).
func (c *Catalog) Filter(device, search string) []OS {
	tags, exclusive := c.deviceTags(device)
	search = strings.ToLower(strings.TrimSpace(search))
	var out []OS
	for _, o := range c.OS {
		if len(tags) > 0 && !matchDevice(o, tags, exclusive) { // a device without tags takes any image
			continue
		}
		if search != "" && !strings.Contains(strings.ToLower(o.Title()+"\n"+o.Description), search) {
			continue
		}
		out = append(out, o)
	}
	return out
}

// deviceTags resolves a device name or tag to the tags it stands for.
func (c *Catalog) deviceTags(device string) (tags []string, exclusive bool) {
	d := strings.ToLower(strings.TrimSpace(device))
	if d == "" {
		return nil, false
	}
	for _, dev := range c.Devices {
		if strings.ToLower(dev.Name) == d {
			for _, t := range dev.Tags {
				tags = append(tags, strings.ToLower(t))
			}
			return tags, dev.Matching == "exclusive"
		}
		if slices.ContainsFunc(dev.Tags, func(t string) bool { return strings.ToLower(t) == d }) {
			return []string{d}, dev.Matching == "exclusive"
		}
	}
	return []string{d}, false
}

func matchDevice(o OS, tags []string, exclusive bool) bool {
	if len(o.Devices) == 0 {
		return !exclusive
	}
	for _, have := range o.Devices {
		have = strings.ToLower(have)
		for _, t := range tags {
			if have == t || strings.HasPrefix(have, t+"-") {
				return true
			}
		}
	}
	return false
}

// Find returns the image named name: an exact (case-insensitive) name or title, else the only
// one whose title contains it.
func (c *Catalog) Find(name string) (OS, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	var partial []OS
	for _, o := range c.OS {
		if strings.ToLower(o.Name) == n || strings.ToLower(o.Title()) == n {
			return o, nil
		}
		if strings.Contains(strings.ToLower(o.Title()), n) {
			partial = append(partial, o)
		}
	}
	switch len(partial) {
	case 1:
		return partial[0], nil
	case 0:
		return OS{}, fmt.Errorf("no image named %q in the catalogue; list them with 'kiln catalog --source %s'", name, c.Source)
	}
	var names []string
	for _, o := range partial[:min(len(partial), 8)] {
		names = append(names, fmt.Sprintf("%q", o.Name))
	}
	return OS{}, fmt.Errorf("%q matches %d images (%s); give the full name", name, len(partial), strings.Join(names, ", "))
}

// ImagerURL is Raspberry Pi Imager's own catalogue.
const ImagerURL = "https://downloads.raspberrypi.org/os_list_imagingutility_v4.json"
