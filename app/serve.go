package app

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/kilnproject/kiln/assembler"
	"github.com/kilnproject/kiln/assembler/recipe"
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
	rollouts      map[string]RolloutStatus // by version
	paused        *widget.Label            // why rollouts are paused
	devices       []DeviceStatus           // as the filters show them
	allDevices    []DeviceStatus
	stateFilter   *widget.Select
	versionFilter *widget.Select
	versionsTable *widget.Table
	devicesTable  *widget.Table
	noVersions    *fyne.Container // placeholders over the empty tables
	noDevices     *fyne.Container
	selected      string // the device whose history shows
	history       []DeviceEvent
	historyTitle  *widget.Label
	historyTable  *widget.Table
	busy          bool
	stopPoll      chan struct{}
	url           string // where the server runs
}

var (
	versionCols = []string{"Version", "Channel", "Updates devices on", "Size", "Published", "Rollout"}
	deviceCols  = []string{"Device", "Address", "Version", "State", "Last seen"}
	historyCols = []string{"Time", "State", "Version", "Target", "Message"}
)

// allChoice is the filter choice that shows every device.
const allChoice = "All"

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

	s.versionsTable = newTable(versionCols, []float32{110, 90, 200, 90, 150, 110},
		func() int { return len(s.versions) }, func(r, c int) string { return s.versionCell(s.versions[r], c) })
	s.devicesTable = newTable(deviceCols, []float32{170, 130, 90, 120, 150},
		func() int { return len(s.devices) }, func(r, c int) string { return deviceCell(s.devices[r], c) })
	s.devicesTable.OnSelected = func(id widget.TableCellID) {
		if id.Row >= 0 && id.Row < len(s.devices) {
			s.showHistory(s.devices[id.Row].ID)
		}
	}
	s.paused = widget.NewLabel("")
	s.paused.Wrapping = fyne.TextWrapWord
	s.paused.Importance = widget.WarningImportance
	s.paused.Hide()
	s.stateFilter = widget.NewSelect([]string{allChoice}, nil)
	s.versionFilter = widget.NewSelect([]string{allChoice}, nil)
	s.stateFilter.SetSelected(allChoice)
	s.versionFilter.SetSelected(allChoice)
	s.stateFilter.OnChanged = func(string) { s.filterDevices() }
	s.versionFilter.OnChanged = func(string) { s.filterDevices() }
	s.historyTitle = widget.NewLabel("Select a device to see its history.")
	s.historyTitle.Importance = widget.LowImportance
	s.historyTable = newTable(historyCols, []float32{150, 120, 80, 80, 330},
		func() int { return len(s.history) }, func(r, c int) string { return historyCell(s.history[r], c) })
	s.historyTable.Hide()

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

	versions := card("Published versions", "", container.NewVBox(
		minHeight(container.NewStack(s.versionsTable, s.noVersions), 150), s.paused))
	filters := container.NewHBox(widget.NewLabel("State"), s.stateFilter, widget.NewLabel("Version"), s.versionFilter)
	devices := card("Devices", "", container.NewBorder(filters, nil, nil, nil,
		minHeight(container.NewStack(s.devicesTable, s.noDevices), 150)))
	history := card("Device history", "", container.NewBorder(s.historyTitle, nil, nil, nil,
		minHeight(s.historyTable, 150)))
	s.content = container.NewBorder(heading("Serve updates"), nil, nil, nil,
		container.NewVScroll(container.NewVBox(top, versions, devices, history)))
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

func (s *serveScreen) versionCell(v PublishedVersion, c int) string {
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
	case 5:
		r, ok := s.rollouts[v.Version]
		switch {
		case !ok:
			return "every device"
		case r.Paused:
			return "paused at " + r.Share
		}
		return r.Share + " of devices"
	}
	if v.Published.IsZero() {
		return ""
	}
	return v.Published.Local().Format("2006-01-02 15:04")
}

func historyCell(e DeviceEvent, c int) string {
	switch c {
	case 0:
		return e.Time.Local().Format("2006-01-02 15:04:05")
	case 1:
		return e.State
	case 2:
		return e.Version
	case 3:
		return e.Target
	}
	return e.Message
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
	s.setRollouts(s.a.cores.Serve.Rollouts())
	s.setDevices(s.a.cores.Serve.Devices())
}

// setRollouts shows the rollouts in the versions table, and why any is paused.
func (s *serveScreen) setRollouts(rs []RolloutStatus) {
	s.rollouts = map[string]RolloutStatus{}
	var why []string
	for _, r := range rs {
		s.rollouts[r.Version] = r
		if r.Paused {
			why = append(why, fmt.Sprintf("Rollout of %s %s", r.Version, r.Reason))
		}
	}
	s.paused.SetText(strings.Join(why, "\n"))
	s.paused.Hidden = len(why) == 0
	s.paused.Refresh()
}

// setDevices takes a new device table and shows the rows the filters let through.
func (s *serveScreen) setDevices(ds []DeviceStatus) {
	s.allDevices = ds
	states, versions := []string{allChoice}, []string{allChoice}
	for _, d := range ds {
		if d.State != "" && !slices.Contains(states, d.State) {
			states = append(states, d.State)
		}
		if d.Version != "" && !slices.Contains(versions, d.Version) {
			versions = append(versions, d.Version)
		}
	}
	slices.Sort(states[1:])
	slices.SortFunc(versions[1:], func(a, b string) int { return recipe.CompareVersions(b, a) })
	s.stateFilter.Options, s.versionFilter.Options = states, versions
	s.filterDevices()
}

// filterDevices shows the devices in the chosen state and on the chosen version.
func (s *serveScreen) filterDevices() {
	state, version := s.stateFilter.Selected, s.versionFilter.Selected
	s.devices = s.devices[:0:0]
	for _, d := range s.allDevices {
		if (state == allChoice || state == "" || d.State == state) && (version == allChoice || version == "" || d.Version == version) {
			s.devices = append(s.devices, d)
		}
	}
	s.showTables()
}

// showHistory loads and shows device id's history.
func (s *serveScreen) showHistory(id string) {
	s.selected = id
	s.a.background(func() {
		evs, err := s.a.cores.Serve.History(id)
		onUI(func() {
			if s.selected != id {
				return
			}
			s.history = evs
			switch {
			case err != nil:
				s.historyTitle.SetText("The history of " + id + " could not be read: " + err.Error())
			case len(evs) == 0:
				s.historyTitle.SetText("No history of " + id + " yet.")
			default:
				s.historyTitle.SetText(fmt.Sprintf("%s: %d events, newest first", id, len(evs)))
			}
			s.historyTable.Hidden = len(evs) == 0
			s.historyTable.Refresh()
		})
	})
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
				devs, rs := s.a.cores.Serve.Devices(), s.a.cores.Serve.Rollouts()
				onUI(func() { s.setRollouts(rs); s.setDevices(devs); s.showStatus() })
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
