package main

import (
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// plotBurst draws each warning's receipt -> dispatch time against when it
// was received, for spotrescue and the baseline, with the 1 s target: where
// in the burst the waiting happens, and how long the burst takes to drain.
func plotBurst(file, title string, r, base *result) error {
	p := plot.New()
	p.Title.Text = "Mass reclaim: receipt -> dispatch, " + title
	p.X.Label.Text = "warning received, seconds after the burst"
	p.Y.Label.Text = "receipt -> dispatch, ms (log scale)"
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	for _, s := range []struct {
		res   *result
		name  string
		color color.Color
		glyph draw.GlyphDrawer
	}{
		{base, "baseline (one event at a time)", color.Gray{Y: 0x90}, draw.CrossGlyph{}},
		{r, "spotrescue", color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, draw.CircleGlyph{}},
	} {
		if s.res == nil || len(s.res.latencies) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(s.res.latencies))
		for i, l := range s.res.latencies {
			// A log axis has no zero: a dispatch within a millisecond shows as 1 ms.
			xys[i] = plotter.XY{X: s.res.received[i].Seconds(), Y: max(float64(l.Microseconds())/1000, 1)}
		}
		sc, err := plotter.NewScatter(xys)
		if err != nil {
			return err
		}
		sc.Color, sc.Shape, sc.Radius = s.color, s.glyph, vg.Points(1.5)
		p.Add(sc)
		p.Legend.Add(s.name, sc)
	}
	target, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 1000}, {X: p.X.Max, Y: 1000}})
	if err != nil {
		return err
	}
	target.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(target)
	p.Legend.Add("target: 1 s", target)
	return p.Save(8*vg.Inch, 4*vg.Inch, file)
}
