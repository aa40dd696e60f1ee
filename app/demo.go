package app

import (
	"time"
)

// demoCores are the fakes with delays that look like real work, for KILN_DEMO.
func demoCores() Cores {
	cores, b, f, _, _ := FakeCores()
	b.Delay = 400 * time.Millisecond
	f.Chunks = 2000
	f.Delay = time.Millisecond
	return cores
}

// demoFlash flashes a fake build to every offered drive without asking, one second after the
// window is up, and quits when done: for the benchmarks (KILN_DEMO=flash), a fast stream of
// progress events against the real UI thread, measured by stats.
func (a *App) demoFlash(stats *uiStatsRun) {
	a.flash.setImage("/home/user/kiln/out/kiln-tiny-1.0.0/kiln-tiny.img")
	for _, d := range a.flash.offered {
		a.flash.checked[d.Path] = true
	}
	a.flash.showDevices(a.flash.offered, a.flash.hidden, nil)
	a.flash.onFinished = func() {
		stats.measure(false)
		time.AfterFunc(300*time.Millisecond, func() { onUI(a.fa.Quit) })
	}
	a.fa.Lifecycle().SetOnStarted(func() {
		time.AfterFunc(time.Second, func() {
			onUI(func() {
				stats.measure(true)
				a.flash.flash(a.flash.selected())
			})
		})
	})
}
