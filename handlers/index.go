package handlers

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/remediator/remediator"
)

//go:embed index.html
var indexHTML string

// indexTmpl is the incidents page; html/template escapes what the alerts say.
var indexTmpl = template.Must(template.New("index").Funcs(template.FuncMap{
	"stamp": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
}).Parse(indexHTML))

// indexRow is one incident on the page.
type indexRow struct {
	*remediator.Incident
	Open bool
}

// index serves the incidents page: the open incidents first (a remediation running or
// waiting, or alerts still firing), then the closed ones, the newest first in each.
func (a *api) index(c echo.Context) error {
	all, err := a.Incidents.List(c.Request().Context())
	if err != nil {
		return err
	}
	rows := make([]indexRow, len(all))
	for i, inc := range all {
		rows[i] = indexRow{Incident: inc, Open: !inc.Closed()}
	}
	slices.SortStableFunc(rows, func(x, y indexRow) int {
		switch {
		case x.Open == y.Open:
			return y.CreatedAt.Compare(x.CreatedAt)
		case x.Open:
			return -1
		}
		return 1
	})
	open := 0
	for _, r := range rows {
		if r.Open {
			open++
		}
	}
	var b bytes.Buffer
	err = indexTmpl.Execute(&b, map[string]any{"Rows": rows, "Open": open, "Now": a.Now()})
	if err != nil {
		return err
	}
	return c.HTMLBlob(http.StatusOK, b.Bytes())
}
