package client_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kilnproject/kiln/ota/client"
	"github.com/kilnproject/kiln/ota/internal/otatest"
	"github.com/kilnproject/kiln/ota/repo"
)

// metadataNames are the files FuzzVerifyMetadata replaces, by the index the input chooses.
var metadataNames = []string{"timestamp.json", "2.snapshot.json", "2.targets.json", "2.root.json"}

// FuzzVerifyMetadata replaces one metadata file of a genuine repository by arbitrary bytes:
// verification never panics, and when it succeeds it yields exactly the genuine targets
// (nothing unsigned gets in).
func FuzzVerifyMetadata(f *testing.F) {
	keys := otatest.Keys(f)
	dir := f.TempDir()
	otatest.Publish(f, dir, keys, "1.0.0", []byte("one"), repo.Options{})
	otatest.Publish(f, dir, keys, "1.1.0", []byte("two"), repo.Options{})
	genuine, err := (&client.Verifier{Root: keys.Root}).Update(context.Background(), dirFetch(dir, nil))
	if err != nil {
		f.Fatal(err)
	}
	for i, name := range metadataNames {
		b, err := os.ReadFile(filepath.Join(dir, "metadata", name))
		if err != nil {
			b = keys.Root
		}
		f.Add(uint8(i), b)
	}
	f.Add(uint8(0), []byte(`{"signed":{"_type":"timestamp","version":99,"meta":{}},"signatures":[]}`))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		name := metadataNames[int(which)%len(metadataNames)]
		got, err := (&client.Verifier{Root: keys.Root}).Update(context.Background(), dirFetch(dir, map[string][]byte{name: data}))
		if err != nil {
			return
		}
		if !reflect.DeepEqual(got.Targets, genuine.Targets) || got.TargetsMD.Signed.Version != genuine.TargetsMD.Signed.Version {
			t.Fatalf("accepted a replaced %s with other targets: %+v", name, got.Targets)
		}
	})
}
