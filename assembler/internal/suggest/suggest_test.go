package suggest

import (
	"reflect"
	"testing"
)

func TestClosest(t *testing.T) {
	known := []string{"virtio_blk", "virtio_net", "virtio", "vfat", "usb_storage", "disk_size", "esp_size", "data_size"}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"virtio_bk", []string{"virtio_blk", "virtio", "virtio_net"}},
		{"disk_sise", []string{"disk_size"}},
		{"usb-storage", []string{"usb_storage"}},
		{"VFAT", []string{"vfat"}},
		{"zzzzzz", nil},
	} {
		got := Closest(tc.name, known, 3)
		if len(got) == 0 && len(tc.want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Closest(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	if d := Distance("kitten", "sitting"); d != 3 {
		t.Errorf("Distance = %d", d)
	}
}
