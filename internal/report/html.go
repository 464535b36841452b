package report

import (
	"bytes"
	_ "embed"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/remediator/remediator"
)

// pageSource is the page, with its style inline and no script, so that the report reads the
// same mailed, attached to a ticket, opened offline or printed.
//
//go:embed html.tmpl
var pageSource string

// pageTemplate is parsed once; html/template escapes every value by its context, which
// matters because evidence text and step output come from outside.
var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"stamp":     stamp,
	"seconds":   seconds,
	"window":    window,
	"asked":     asked,
	"recovery":  recovery,
	"early":     early,
	"instance":  instance,
	"alertText": alertText,
	"trim":      strings.TrimSpace,
	"inc":       func(i int) int { return i + 1 },
}).Parse(pageSource))

// HTML renders the report as a single self-contained HTML page, with charts of the members'
// database sizes and of the steps over time.
func HTML(r Report) ([]byte, error) {
	v := htmlView{Report: r, Columns: memberColumns, Sizes: sizes(r.Members), Gantt: gantt(r.Steps)}
	for _, m := range r.Members {
		row := memberRow(m, mixed(r.Members))
		cells := make([]memberCell, len(row))
		for i, f := range row {
			cells[i] = memberCell{figure: f, Label: memberColumns[i]}
		}
		v.Rows = append(v.Rows, cells)
	}
	if len(r.Members) > 0 {
		v.MembersNote = membersNote(r.Members)
	}
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// htmlView is the report with what the page shows that the JSON report does not carry.
type htmlView struct {
	Report
	Columns     []string
	Rows        [][]memberCell
	MembersNote string
	// Sizes is nil when no member figures were taken.
	Sizes *sizeChart
	// Gantt is nil when the remediation had no steps.
	Gantt *stepChart
}

// memberCell is a figure of the members table with its column's heading, which labels it
// where a narrow screen shows each member as a card.
type memberCell struct {
	figure
	Label string
}

// barsWidth is the length of the longest bar, in SVG user units. The template lays the
// charts out around it (720 wide: 150 for the labels, then the bars, then room for the text
// at the end of the longest bar), and the layout here is relative to where the bars start.
const barsWidth = 440

// sizeChart is each member's database size before and after, as grouped bars.
type sizeChart struct {
	Height int
	Groups []sizeGroup
}

// sizeGroup is one member's bars, with the member's quota as a line across them.
type sizeGroup struct {
	Member string
	Label  string
	Y      float64
	// Quota is empty where the quota is not known; otherwise its line goes at QuotaX.
	Quota  string
	QuotaX float64
	Bars   []sizeBar
}

// sizeBar is one side of a member's figures; a side that has no figure is a note instead.
type sizeBar struct {
	Side string
	// Y is from the top of the member's group.
	Y     float64
	Width float64
	Label string
	// Missing says why there is no bar: the side was not measured or the member did not answer.
	Missing string
}

// sizes lays out the members' chart, or returns nil when there is nothing to draw.
func sizes(ms []Member) *sizeChart {
	if len(ms) == 0 {
		return nil
	}
	// One scale for every bar, up to the largest size or quota, so the bars compare.
	var most int64
	for _, m := range ms {
		for _, s := range []*remediator.MemberStatus{m.Before, m.After} {
			if s != nil {
				most = max(most, s.DBSize, s.Quota)
			}
		}
	}
	x := func(n int64) float64 {
		if most == 0 {
			return 0
		}
		return round(float64(n) / float64(most) * barsWidth)
	}
	const top, group = 32, 54
	c := &sizeChart{Height: top + len(ms)*group}
	for i, m := range ms {
		g := sizeGroup{Member: m.Name, Label: clip(m.Name, 20), Y: float64(top + i*group)}
		// The latest quota is the one the member runs with now.
		for _, s := range []*remediator.MemberStatus{m.After, m.Before} {
			if s != nil && s.Quota > 0 {
				g.QuotaX, g.Quota = x(s.Quota), remediator.HumanBytes(s.Quota)
				break
			}
		}
		for j, side := range []struct {
			name string
			s    *remediator.MemberStatus
		}{{"before", m.Before}, {"after", m.After}} {
			b := sizeBar{Side: side.name, Y: float64(j * 20)}
			switch {
			case side.s == nil:
				b.Missing = "not measured"
			case side.s.Error != "":
				b.Missing = "unreachable"
			default:
				// A bar too thin to see would read as no bar at all.
				b.Width, b.Label = max(x(side.s.DBSize), 1), remediator.HumanBytes(side.s.DBSize)
			}
			g.Bars = append(g.Bars, b)
		}
		c.Groups = append(c.Groups, g)
	}
	return c
}

// stepChart is the steps on one time axis: a bar from each step's start to its finish.
type stepChart struct {
	Height int
	Start  string
	Span   string
	Rows   []stepRow
}

// stepRow is one step's line in the chart; a step that never ran has no bar.
type stepRow struct {
	Step
	Y float64
	// Ran says whether the step has a bar, from X to End.
	Ran           bool
	X, Width, End float64
	Label         string
}

// gantt lays out the step chart, or returns nil when there are no steps.
func gantt(steps []Step) *stepChart {
	if len(steps) == 0 {
		return nil
	}
	// A skipped step never ran, whatever times it carries.
	ran := func(s Step) bool { return !s.StartedAt.IsZero() && s.State != remediator.StepSkipped }
	var first, last time.Time
	for _, s := range steps {
		if !ran(s) {
			continue
		}
		if first.IsZero() || s.StartedAt.Before(first) {
			first = s.StartedAt
		}
		for _, t := range []time.Time{s.StartedAt, s.FinishedAt} {
			if t.After(last) {
				last = t
			}
		}
	}
	span := max(last.Sub(first), time.Millisecond)
	x := func(t time.Time) float64 { return round(float64(t.Sub(first)) / float64(span) * barsWidth) }
	const top, row = 28, 24
	c := &stepChart{Height: top + len(steps)*row, Start: stamp(first)}
	if !first.IsZero() {
		c.Span = duration(span)
	}
	for i, s := range steps {
		r := stepRow{Step: s, Y: float64(top + i*row)}
		switch {
		case !ran(s):
			r.Label = "not run (" + string(s.State) + ")"
		default:
			r.Ran, r.X = true, x(s.StartedAt)
			end, took := s.FinishedAt, seconds(s.Seconds)
			if end.IsZero() {
				// Still running, or cut short: it lasts to the end of what is known.
				end, took = last, "not finished"
			}
			// A bar too thin to see would read as a step that did not run.
			r.Width = max(round(x(end)-r.X), 2)
			r.End = round(r.X + r.Width)
			r.Label = took
			if s.State != remediator.StepSucceeded {
				r.Label += ", " + string(s.State)
			}
		}
		c.Rows = append(c.Rows, r)
	}
	return c
}

// round keeps one decimal, which is finer than a pixel and keeps the golden files readable.
func round(f float64) float64 { return math.Round(f*10) / 10 }

// clip shortens a label to n characters, so that it stays in the chart's label column.
func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
