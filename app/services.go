package app

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// restartPolicies are the restart policies a service may have, as the recipe spells them.
var restartPolicies = []string{"always", "on-failure", "no"}

// servicesSection is the Build screen's Services card: the recipe's [[system.services]].
type servicesSection struct {
	s        *buildScreen
	services []RecipeService
	list     *widget.List
	sel      int
	none     *widget.Label
	editor   *serviceEditor // the open editor, for the tests
}

func newServicesSection(s *buildScreen) *servicesSection {
	ss := &servicesSection{s: s, sel: -1}
	ss.list = widget.NewList(
		func() int { return len(ss.services) },
		func() fyne.CanvasObject {
			return container.NewHBox(widget.NewIcon(theme.MediaPlayIcon()), widget.NewLabel("service"))
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			o.(*fyne.Container).Objects[1].(*widget.Label).SetText(serviceLabel(ss.services[i]))
		})
	ss.list.OnSelected = func(id widget.ListItemID) { ss.sel = id }
	ss.none = widget.NewLabelWithStyle("No services: add one to start a program at boot and keep it running.", fyne.TextAlignLeading, fyne.TextStyle{Italic: true})
	return ss
}

// serviceLabel is a service's row: "sensors: /usr/bin/run (as pi, restart on-failure, after the network)".
func serviceLabel(sv RecipeService) string {
	user := sv.User
	if user == "" {
		user = "root"
	}
	restart := sv.Restart
	if restart == "" {
		restart = "always"
	}
	s := fmt.Sprintf("%s: %s  (as %s, restart %s", sv.Name, sv.Command, user, restart)
	if sv.AfterNetwork {
		s += ", after the network"
	}
	return s + ")"
}

func (ss *servicesSection) content() fyne.CanvasObject {
	return container.NewBorder(nil, container.NewVBox(container.NewHBox(
		widget.NewButtonWithIcon("Add service…", theme.ContentAddIcon(), func() { ss.edit(-1) }),
		widget.NewButtonWithIcon("Edit…", theme.DocumentCreateIcon(), func() { ss.edit(ss.sel) }),
		widget.NewButtonWithIcon("Remove", theme.DeleteIcon(), ss.remove)), ss.s.errs["services"]),
		nil, nil, container.NewStack(minHeight(ss.list, 96), container.NewVBox(ss.none)))
}

// refresh shows the list, or the placeholder when there are no services.
func (ss *servicesSection) refresh() {
	ss.list.Refresh()
	if len(ss.services) == 0 {
		ss.none.Show()
	} else {
		ss.none.Hide()
	}
}

func (ss *servicesSection) set(svcs []RecipeService) {
	ss.services = slices.Clone(svcs)
	ss.sel = -1
	ss.list.UnselectAll()
	ss.refresh()
}

func (ss *servicesSection) remove() {
	if ss.sel < 0 || ss.sel >= len(ss.services) {
		return
	}
	ss.services = slices.Delete(ss.services, ss.sel, ss.sel+1)
	ss.sel = -1
	ss.list.UnselectAll()
	ss.refresh()
	ss.s.onChanged()
}

// serviceEditor is the dialog adding or editing service i (-1: a new one). Each field is checked
// by the recipe validator, so the dialog accepts what a build accepts.
type serviceEditor struct {
	ss            *servicesSection
	i             int
	name, command *widget.Entry
	userSel       *widget.SelectEntry
	restart       *widget.Select
	after         *widget.Check
	dlg           *dialog.FormDialog
}

func (ss *servicesSection) edit(i int) {
	if i >= len(ss.services) || (i < 0 && i != -1) {
		return
	}
	sv := RecipeService{Restart: "always"}
	if i >= 0 {
		sv = ss.services[i]
	}
	e := &serviceEditor{ss: ss, i: i}
	e.name, e.command = widget.NewEntry(), widget.NewEntry()
	e.name.SetPlaceHolder("garden")
	e.command.SetPlaceHolder("/usr/bin/python3 /opt/garden.py")
	users := []string{"root"}
	if u := strings.TrimSpace(ss.s.user.Text); u != "" && u != "root" {
		users = append(users, u)
	}
	e.userSel = widget.NewSelectEntry(users)
	e.userSel.SetPlaceHolder("root")
	e.restart = widget.NewSelect(restartPolicies, nil)
	e.after = widget.NewCheck("Start once the network is up", nil)
	e.name.SetText(sv.Name)
	e.command.SetText(sv.Command)
	e.userSel.SetText(sv.User)
	if sv.Restart == "" {
		sv.Restart = "always"
	}
	e.restart.SetSelected(sv.Restart)
	e.after.SetChecked(sv.AfterNetwork)
	e.name.AlwaysShowValidationError, e.command.AlwaysShowValidationError, e.userSel.AlwaysShowValidationError = true, true, true
	e.name.Validator = e.check("name")
	e.command.Validator = e.check("command")
	e.userSel.Validator = e.check("user")
	revalidate := func(string) {
		e.name.Validate()
		e.command.Validate()
		e.userSel.Validate()
	}
	e.name.OnChanged, e.command.OnChanged, e.userSel.OnChanged = revalidate, revalidate, revalidate
	title := "Add a service"
	if i >= 0 {
		title = "Edit service " + sv.Name
	}
	e.dlg = dialog.NewForm(title, "Save", "Cancel", []*widget.FormItem{
		{Text: "Name", Widget: e.name, HintText: "lowercase letters, digits, '.', '_', '@' or '-'"},
		{Text: "Command", Widget: e.command, HintText: "run by /bin/sh -c"},
		{Text: "User", Widget: e.userSel, HintText: "root, or the recipe's user"},
		{Text: "Restart", Widget: e.restart},
		{Text: "", Widget: e.after},
	}, func(ok bool) {
		if ok {
			e.apply()
		}
		ss.editor = nil
	}, ss.s.a.win)
	e.dlg.Resize(fyne.NewSize(560, 360))
	ss.editor = e
	e.dlg.Show()
	revalidate("")
}

// service is what the dialog shows.
func (e *serviceEditor) service() RecipeService {
	return RecipeService{Name: strings.TrimSpace(e.name.Text), Command: strings.TrimSpace(e.command.Text),
		User: strings.TrimSpace(e.userSel.Text), Restart: e.restart.Selected, AfterNetwork: e.after.Checked}
}

// with returns the services with the dialog's applied, and the index it has there.
func (e *serviceEditor) with() ([]RecipeService, int) {
	svcs := slices.Clone(e.ss.services)
	if e.i >= 0 {
		svcs[e.i] = e.service()
		return svcs, e.i
	}
	return append(svcs, e.service()), len(svcs)
}

// check validates one field of the edited service with the recipe validator.
func (e *serviceEditor) check(field string) fyne.StringValidator {
	return func(string) error {
		r := e.ss.s.collect()
		var i int
		r.Services, i = e.with()
		want := fmt.Sprintf("system.services[%d].%s", i, field)
		for _, p := range e.ss.s.a.cores.Build.Validate(r) {
			if p.Field == want {
				return errors.New(p.Message)
			}
		}
		return nil
	}
}

func (e *serviceEditor) apply() {
	e.ss.services, _ = e.with()
	e.ss.refresh()
	e.ss.s.onChanged()
}
