package initramfs

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"path"
	"sort"
	"strings"
)

// moduleName is the name modprobe uses for a module file: its base name without .ko(.xz|.zst|.gz),
// with '-' read as '_'.
func moduleName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

func addModules(t *tree, s *Spec) error {
	m := s.Kernel
	if len(m.Files) == 0 && len(m.Load) == 0 {
		return nil
	}
	if m.Release == "" || strings.ContainsAny(m.Release, "/\x00") {
		return fmt.Errorf("kernel modules: kernel release %q is not valid", m.Release)
	}
	root := "lib/modules/" + m.Release
	byName := map[string]string{} // module name → path relative to root
	for _, f := range m.Files {
		rel := cleanPath(f.Path)
		if strings.HasPrefix(rel, "..") || !strings.Contains(path.Base(rel), ".ko") {
			return fmt.Errorf("kernel module %q: want a .ko path relative to /lib/modules/%s", f.Path, m.Release)
		}
		byName[moduleName(rel)] = rel
		f.Path = root + "/" + rel
		if f.Mode == 0 {
			f.Mode = 0o644
		}
		if err := t.add(f); err != nil {
			return err
		}
	}
	dep := m.Dep
	if dep == nil {
		var err error
		if dep, err = modulesDep(m.Files); err != nil {
			return err
		}
	} else {
		dep = filterDep(dep, byName)
	}
	if err := t.file(root+"/modules.dep", 0o644, dep, "kiln:modules.dep"); err != nil {
		return err
	}
	for _, name := range m.Load {
		if _, ok := byName[strings.ReplaceAll(name, "-", "_")]; !ok && len(m.Files) > 0 {
			return fmt.Errorf("kernel module %s is to be loaded at boot but is not among the modules given", name)
		}
	}
	return nil
}

// filterDep keeps the modules.dep lines of the modules present.
func filterDep(dep []byte, present map[string]string) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(dep))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		mod, _, ok := strings.Cut(line, ":")
		if ok && present[moduleName(mod)] == mod {
			out.WriteString(line + "\n")
		}
	}
	return out.Bytes()
}

// modinfoDepends reads the "depends=" entry of a module's .modinfo section.
func modinfoDepends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// modulesDep writes modules.dep for the given modules the way depmod does: each module followed by
// all modules it needs, transitively, ordered so that loading the list from the end satisfies
// every dependency before its user.
func modulesDep(files []File) ([]byte, error) {
	byName := map[string]string{}
	deps := map[string][]string{}
	for _, f := range files {
		rel := cleanPath(f.Path)
		name := moduleName(rel)
		byName[name] = rel
		if !strings.HasSuffix(rel, ".ko") {
			return nil, fmt.Errorf("kernel module %s is compressed: pass its modules.dep (Modules.Dep)", rel)
		}
		d, err := modinfoDepends(f.Data)
		if err != nil {
			return nil, fmt.Errorf("kernel module %s: %w", rel, err)
		}
		for i := range d {
			d[i] = strings.ReplaceAll(d[i], "-", "_")
		}
		deps[name] = d
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return byName[names[i]] < byName[names[j]] })
	var out bytes.Buffer
	for _, n := range names {
		// Post-order walk: dependencies before their users; reversed for the dep line.
		var order []string
		state := map[string]int{} // 1 visiting, 2 done
		var visit func(string) error
		visit = func(m string) error {
			switch state[m] {
			case 1:
				return fmt.Errorf("kernel modules: dependency cycle through %s", m)
			case 2:
				return nil
			}
			state[m] = 1
			for _, d := range deps[m] {
				if _, ok := byName[d]; !ok {
					return fmt.Errorf("kernel module %s needs %s, which is not among the modules given", m, d)
				}
				if err := visit(d); err != nil {
					return err
				}
			}
			state[m] = 2
			order = append(order, m)
			return nil
		}
		if err := visit(n); err != nil {
			return nil, err
		}
		out.WriteString(byName[n] + ":")
		for i := len(order) - 2; i >= 0; i-- { // the last entry is n itself
			out.WriteString(" " + byName[order[i]])
		}
		out.WriteString("\n")
	}
	return out.Bytes(), nil
}
