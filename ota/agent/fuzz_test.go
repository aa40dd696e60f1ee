package agent

import (
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kilnproject/kiln/ota"
)

// FuzzCheckAnswer feeds arbitrary /v1/check answers to the agent: it never panics, the check
// interval it takes stays within 5 s–24 h, and the version it names in messages is "" or a
// semantic version.
func FuzzCheckAnswer(f *testing.F) {
	for _, s := range []string{
		`{"update":true}`,
		`{"update":true,"target":null,"delta":{}}`,
		`{"update":true,"target":{"version":"1.1.0-x/../../ESCAPED"},"interval":-1}`,
		`{"update":false,"message":"up to date","interval":300}`,
		`{"update":true,"target":{"path":"tiny-1.1.0.efi","url":"/targets/x","version":"1.1.0","size":3,"sha256":"00"},"interval":9223372036854775807}`,
	} {
		f.Add([]byte(s))
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp ota.CheckResponse
		if json.Unmarshal(data, &resp) != nil {
			return
		}
		a := &Agent{log: log}
		v := a.readCheck(&resp)
		if a.interval != 0 && (a.interval < 5*time.Second || a.interval > 24*time.Hour) {
			t.Fatalf("interval %s from %q", a.interval, data)
		}
		if v != "" && ota.CheckVersion(v) != nil {
			t.Fatalf("offered version %q is not a semantic version", v)
		}
	})
}
