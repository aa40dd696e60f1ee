//go:build !linux && !darwin && !windows

package vmrunner

func hostAccel() Accel    { return "" }
func accelPresent() error { return nil }
func hostBootID() string  { return "" }
