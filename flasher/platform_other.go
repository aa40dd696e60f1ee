//go:build !linux && !darwin && !windows

package flasher

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/sirupsen/logrus"
)

var errPlatform = fmt.Errorf("flashing drives on %s: %w", runtime.GOOS, errors.ErrUnsupported)

func listDevices(bool) ([]Device, error)          { return nil, errPlatform }
func lookupDevice(string) (Device, error)         { return Device{}, errPlatform }
func disksOfFile(string) ([]string, error)        { return nil, errPlatform }
func backedBy(Device, string) bool                { return false }
func unmountAll(Device, logrus.FieldLogger) error { return errPlatform }
func openDevice(Device) (blockDevice, error)      { return nil, errPlatform }
func ejectDevice(Device) error                    { return errPlatform }
func isRemovedError(error) bool                   { return false }
func isNoSpaceError(error) bool                   { return false }
