package main

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// plotNames are the short titles of the networks in the plots.
var plotNames = map[string]string{
	"model": "with the network model of S3",
	"none":  "on loopback, no network model",
}

// plotTools are the agent's layouts, each with its own marker.
var plotTools = []struct {
	name   string
	offset float64
	color  color.Color
	glyph  draw.GlyphDrawer
}{
	{"agent", -0.12, color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, draw.CircleGlyph{}},
	{"agent-pack", 0.12, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, draw.TriangleGlyph{}},
}

// plot draws, for each network, how many times as fast as `aws s3 sync`
// each agent layout moved each data set, with the targets, into
// dir/agent-vs-aws-<network>.png, and returns the files written. PNG, not
// SVG: an SVG viewer substitutes its own fonts, and the legend's text then
// runs over its markers.
func (r report) plot(dir string) ([]string, error) {
	var files []string
	for _, network := range r.networks() {
		p, err := r.speedups(network)
		if err != nil {
			return files, err
		}
		name := filepath.Join(dir, "agent-vs-aws-"+network+".png")
		if err := p.Save(8*vg.Inch, 4*vg.Inch, name); err != nil {
			return files, err
		}
		files = append(files, name)
	}
	return files, nil
}

func (r report) speedups(network string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "spotrescue agent against aws s3 sync, " + plotNames[network]
	p.Y.Label.Text = "times as fast as aws s3 sync (log scale)"
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	var labels []string
	points := map[string]plotter.XYs{}
	var targetLines []plotter.XYs
	for _, x := range r.results {
		if x.network != network || x.tool != "aws" {
			continue
		}
		i := float64(len(labels))
		labels = append(labels, fmt.Sprintf("(%s) %s", x.caseName, x.op))
		for _, t := range plotTools {
			if y, ok := r.find(network, x.caseName, x.op, t.name); ok {
				points[t.name] = append(points[t.name], plotter.XY{X: i + t.offset, Y: y.mibps() / x.mibps()})
			}
		}
		targetLines = append(targetLines, plotter.XYs{{X: i - 0.3, Y: targets[x.caseName]}, {X: i + 0.3, Y: targets[x.caseName]}})
	}
	if len(labels) == 0 {
		return nil, fmt.Errorf("no aws results for network %s", network)
	}
	base, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 1}, {X: float64(len(labels)) - 0.5, Y: 1}})
	if err != nil {
		return nil, err
	}
	base.Color = color.Gray{Y: 0x80}
	p.Add(base)
	p.Legend.Add("aws s3 sync (1x)", base)
	for i, xy := range targetLines {
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		l.Width = vg.Points(1.5)
		p.Add(l)
		if i == 0 {
			p.Legend.Add("target", l)
		}
	}
	for _, t := range plotTools {
		if len(points[t.name]) == 0 {
			continue
		}
		s, err := plotter.NewScatter(points[t.name])
		if err != nil {
			return nil, err
		}
		s.Color, s.Shape, s.Radius = t.color, t.glyph, vg.Points(4)
		p.Add(s)
		p.Legend.Add(t.name, s)
	}
	p.NominalX(labels...)
	p.Add(plotter.NewGrid())
	p.Y.Min = min(p.Y.Min, 0.5) // the aws line off the axis
	return p, nil
}

// parseResults reads the results back from a report's Markdown (the
// generated section of BENCHMARKS.md), so that -replot can draw a recorded
// run again. Each time comes from the more precise of its two columns.
func parseResults(md string) ([]result, error) {
	var rs []result
	network := ""
	for _, line := range strings.Split(md, "\n") {
		for n, title := range networkNames {
			if strings.HasPrefix(line, "#### "+title) {
				network = n
			}
		}
		cells := strings.Split(line, "|")
		if network == "" || len(cells) < 8 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "(") {
			continue
		}
		name := strings.TrimSpace(cells[1])[1:2]
		set, ok := dataSets[name]
		if !ok {
			return nil, fmt.Errorf("unknown data set in %q", line)
		}
		best, err1 := strconv.ParseFloat(strings.TrimSpace(cells[4]), 64)
		rate, err2 := strconv.ParseFloat(strings.TrimSpace(cells[6]), 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("no times in %q", line)
		}
		secs := best
		if rate >= 10 {
			secs = float64(set.bytes()) / (1 << 20) / rate
		}
		rs = append(rs, result{caseName: name, op: strings.TrimSpace(cells[2]), tool: strings.TrimSpace(cells[3]), network: network,
			set: set, wall: time.Duration(secs * float64(time.Second)), runs: 1})
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("no results found")
	}
	return rs, nil
}
