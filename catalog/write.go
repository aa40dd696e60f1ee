package catalog

import (
	"encoding/json"
	"fmt"
	"net/url"
)

// Document is a catalogue in Raspberry Pi Imager's schema, as Kiln writes it for its own
// published builds (kiln publish): folders are not used, so OS.Folder stays empty.
type Document struct {
	Imager *Imager `json:"imager,omitempty"`
	OSList []OS    `json:"os_list"`
}

// Imager is the document's "imager" section: the devices the images are for.
type Imager struct {
	Devices []Device `json:"devices"`
}

// Marshal encodes d as indented JSON.
func (d *Document) Marshal() ([]byte, error) {
	if d.OSList == nil {
		d.OSList = []OS{}
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ReadDocument decodes a document Kiln wrote (see Load for catalogues from elsewhere).
func ReadDocument(data []byte) (*Document, error) {
	var d Document
	if len(data) > MaxDocument {
		return nil, fmt.Errorf("%w: larger than %d MiB", ErrCatalog, MaxDocument>>20)
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCatalog, err)
	}
	return &d, nil
}

// Absolute returns a copy of d whose relative image and icon URLs are resolved against base, for
// clients (Raspberry Pi Imager) that take absolute URLs only.
func (d *Document) Absolute(base *url.URL) *Document {
	out := &Document{Imager: d.Imager, OSList: make([]OS, len(d.OSList))}
	for i, o := range d.OSList {
		o.URL, o.Icon = resolve(base, o.URL), resolve(base, o.Icon)
		out.OSList[i] = o
	}
	return out
}
