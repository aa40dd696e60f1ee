package app

import (
	"fmt"
	"net"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/internal/units"
)

// servePoll is how often the devices table is refreshed while the server runs.
const servePoll = 2 * time.Second

// serveScreen runs the LAN update server.
type serveScreen struct {
	a       *App
	content fyne.CanvasObject

	toggle     *widget.Check
	addr       *widget.SelectEntry
	status     *widget.Label
	publishBtn *widget.Button
	current    *widget.Label

	versions      []PublishedVersion
	devices       []DeviceStatus
	versionsTable *widget.Table
	devicesTable  *widget.Table
	noVersions    *fyne.Container // placeholders over the empty tables
	noDevices     *fyne.Container
	busy          bool
	stopPoll      chan struct{}
	url           string // where the server runs
}

var (
	versionCols = []string{"Version", "Channel", "Updates devices on", "Size", "Published"}
	deviceCols  = []string{"Device", "Address", "Version", "State", "Last seen"}
)

func newServeScreen(a *App) *serveScreen {
	s := &serveScreen{a: a}
	s.toggle = widget.NewCheck("Serve updates on this network", s.onToggle)
	s.addr = widget.NewSelectEntry(listenChoices(DefaultServeAddr))
	s.addr.SetText(a.pref(prefServeAddr, DefaultServeAddr))
	s.addr.OnSubmitted = func(string) { s.onAddrSubmitted() }
	s.status = widget.NewLabel("Stopped. Devices keep their current version.")
	s.status.Wrapping = fyne.TextWrapWord

	s.publishBtn = widget.NewButtonWithIcon("Publish current build", theme.UploadIcon(), s.publishCurrent)
	s.publishBtn.Importance = widget.HighImportance
	s.current = widget.NewLabel("")
	s.current.Importance = widget.LowImportance

	s.versionsTable = newTable(versionCols, []float32{110, 90, 200, 90, 150},
		func() int { return len(s.versions) }, func(r, c int) string { return versionCell(s.versions[r], c) })
	s.devicesTable = newTable(deviceCols, []float32{170, 130, 90, 120, 150},
		func() int { return len(s.devices) }, func(r, c int) string { return deviceCell(s.devices[r], c) })

	s.noVersions = placeholder("Nothing published yet: build an image and press \"Publish current build\".")
	s.noDevices = placeholder("No device has checked in. Devices appear here when they ask the server for updates.")
	server := card("Update server", "Devices running a Kiln image find it on the LAN (DNS-SD) and update themselves",
		container.NewVBox(s.toggle,
			widget.NewForm(&widget.FormItem{Text: "Listen on", Widget: s.addr,
				HintText: "host:port — pick an interface's address, or 0.0.0.0 for all"}),
			s.status))
	publish := card("Publish", "Add the last build to the signed update repository",
		container.NewVBox(s.publishBtn, s.current))
	top := container.NewGridWithColumns(2, server, publish)

	versions := card("Published versions", "", minHeight(container.NewStack(s.versionsTable, s.noVersions), 150))
	devices := card("Devices", "", minHeight(container.NewStack(s.devicesTable, s.noDevices), 150))
	s.content = container.NewBorder(heading("Serve updates"), nil, nil, nil,
		container.NewVScroll(container.NewVBox(top, versions, devices)))
	return s
}

// newTable makes a read-only table with a header row.
func newTable(cols []string, widths []float32, rows func() int, cell func(r, c int) string) *widget.Table {
	t := widget.NewTableWithHeaders(
		func() (int, int) { return rows(), len(cols) },
		func() fyne.CanvasObject { return widget.NewLabel("") },
		func(id widget.TableCellID, o fyne.CanvasObject) { o.(*widget.Label).SetText(cell(id.Row, id.Col)) })
	t.ShowHeaderColumn = false
	t.CreateHeader = func() fyne.CanvasObject {
		return widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	}
	t.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		if id.Row < 0 && id.Col >= 0 {
			o.(*widget.Label).SetText(cols[id.Col])
		}
	}
	for i, w := range widths {
		t.SetColumnWidth(i, w)
	}
	return t
}

func versionCell(v PublishedVersion, c int) string {
	switch c {
	case 0:
		return v.Version
	case 1:
		return v.Channel
	case 2:
		hi := v.MaxFrom
		if hi == "" {
			hi = "below " + v.Version
		}
		return v.MinFrom + " … " + hi
	case 3:
		return units.Binary(v.Size)
	}
	return v.Published.Local().Format("2006-01-02 15:04")
}

func deviceCell(d DeviceStatus, c int) string {
	switch c {
	case 0:
		if d.Hostname != "" {
			return d.Hostname
		}
		return d.ID
	case 1:
		return d.Address
	case 2:
		return d.Version
	case 3:
		return d.State
	}
	return d.LastSeen.Local().Format("2006-01-02 15:04:05")
}

func (s *serveScreen) start() { s.refresh() }

// refresh reloads the versions and devices and the current build's label.
func (s *serveScreen) refresh() {
	if cur := s.a.Current(); cur != nil {
		s.current.SetText(fmt.Sprintf("Current build: %s %s (%s)", cur.Name, cur.Version, units.Binary(cur.Size)))
		s.publishBtn.Enable()
	} else {
		s.current.SetText("Build an image first: it becomes the current build.")
		s.publishBtn.Disable()
	}
	vs, err := s.a.cores.Serve.Versions()
	if err == nil {
		s.versions = vs
	}
	s.devices = s.a.cores.Serve.Devices()
	s.showTables()
}

// showTables refreshes the tables and their empty-state messages.
func (s *serveScreen) showTables() {
	s.noVersions.Hidden = len(s.versions) > 0
	s.noDevices.Hidden = len(s.devices) > 0
	s.versionsTable.Hidden = len(s.versions) == 0
	s.devicesTable.Hidden = len(s.devices) == 0
	s.versionsTable.Refresh()
	s.devicesTable.Refresh()
	s.noVersions.Refresh()
	s.noDevices.Refresh()
}

func (s *serveScreen) onToggle(on bool) {
	if s.busy || on == s.a.cores.Serve.Running() {
		return
	}
	if on {
		s.startServer()
	} else {
		s.stopServer()
	}
}

func (s *serveScreen) onAddrSubmitted() {
	s.a.setPref(prefServeAddr, s.addr.Text)
	if s.a.cores.Serve.Running() {
		s.stopServer()
		s.startServer()
	}
}

// showStatus shows where the server runs and what it cannot do.
func (s *serveScreen) showStatus() {
	if !s.a.cores.Serve.Running() {
		return
	}
	text := "Serving at " + s.url
	if w := s.a.cores.Serve.Warning(); w != "" {
		text += "\nWarning: " + w + ". Devices stop updating 7 days after the last signing."
	}
	s.status.SetText(text)
}

// startServer starts the server in the background.
func (s *serveScreen) startServer() {
	addr := s.addr.Text
	s.a.setPref(prefServeAddr, addr)
	s.busy = true
	s.addr.Disable()
	s.status.SetText("Starting on " + addr + "…")
	s.a.background(func() {
		url, err := s.a.cores.Serve.Start(s.a.ctx, addr)
		onUI(func() {
			s.busy = false
			if err != nil {
				s.toggle.SetChecked(false)
				s.addr.Enable()
				s.status.SetText("Stopped.")
				s.a.showError("The update server did not start", err,
					"Choose another port in \"Listen on\" (one not used by another program), or check the address.")
				return
			}
			s.url = url
			s.showStatus()
			s.pollDevices()
			s.refresh()
		})
	})
}

func (s *serveScreen) stopServer() {
	s.busy = true
	if s.stopPoll != nil {
		close(s.stopPoll)
		s.stopPoll = nil
	}
	s.a.background(func() {
		err := s.a.cores.Serve.Stop()
		onUI(func() {
			s.busy = false
			s.addr.Enable()
			s.status.SetText("Stopped. Devices keep their current version.")
			s.refresh()
			if err != nil {
				s.a.showError("The update server did not stop cleanly", err, "Quit Kiln to release the port.")
			}
		})
	})
}

// pollDevices refreshes the devices table while the server runs.
func (s *serveScreen) pollDevices() {
	stop := make(chan struct{})
	s.stopPoll = stop
	s.a.watch(func() {
		t := time.NewTicker(servePoll)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-s.a.ctx.Done():
				return
			case <-t.C:
				devs := s.a.cores.Serve.Devices()
				onUI(func() { s.devices = devs; s.showTables(); s.showStatus() })
			}
		}
	})
}

// publishCurrent adds the current build to the repository.
func (s *serveScreen) publishCurrent() {
	cur := s.a.Current()
	if cur == nil {
		s.a.showError("Nothing to publish", fmt.Errorf("no image has been built in this session"),
			"Build an image on the Build screen first.")
		return
	}
	s.publishBtn.Disable()
	s.current.SetText(fmt.Sprintf("Publishing %s %s…", cur.Name, cur.Version))
	s.a.background(func() {
		v, err := s.a.cores.Serve.Publish(s.a.ctx, cur)
		note := ""
		if m, merr := assembler.LoadManifest(cur.Manifest); merr == nil && m.ISO != nil {
			note = fmt.Sprintf("\n%s is read-only: a device booted from it takes no updates (flash %s for that).",
				m.ISO.File, m.Image.File)
		}
		onUI(func() {
			s.refresh()
			if err != nil {
				s.a.showError("Publishing failed", err, "Check the signing keys in the update repository, then publish again.")
				return
			}
			s.current.SetText(fmt.Sprintf("Published %s %s to channel %s.", v.Name, v.Version, v.Channel) + note)
		})
	})
}

// shutdown stops the server when the app closes.
func (s *serveScreen) shutdown() {
	if s.stopPoll != nil {
		close(s.stopPoll)
		s.stopPoll = nil
	}
	if s.a.cores.Serve.Running() {
		s.a.cores.Serve.Stop()
	}
}

// placeholder is the italic message shown instead of an empty table.
func placeholder(text string) *fyne.Container {
	l := widget.NewLabelWithStyle(text, fyne.TextAlignCenter, fyne.TextStyle{Italic: true})
	l.Importance = widget.LowImportance
	l.Wrapping = fyne.TextWrapWord
	return container.NewBorder(nil, nil, nil, nil, l)
}

// listenChoices offers every interface's IPv4 address with the port of def, after def itself.
func listenChoices(def string) []string {
	_, port, err := net.SplitHostPort(def)
	if err != nil {
		return []string{def}
	}
	out := []string{def}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil {
				out = append(out, net.JoinHostPort(ip.IP.String(), port))
			}
		}
	}
	return out
}
