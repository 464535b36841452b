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

// index serves the incidents page: the open incidents first (a remediation running or
// waiting, or alerts still firing), then the closed ones, the newest first in each.
func (a *api) index(c echo.Context) error {
	all, err := a.Incidents.List(c.Request().Context())
	if err != nil {
		return err
	}
	// List gives the newest first; a stable sort keeps that order within each group.
	slices.SortStableFunc(all, func(x, y *remediator.Incident) int {
		switch {
		case x.Closed() == y.Closed():
			return 0
		case x.Closed():
			return 1
		}
		return -1
	})
	open := 0
	for _, inc := range all {
		if !inc.Closed() {
			open++
		}
	}
	var b bytes.Buffer
	err = indexTmpl.Execute(&b, map[string]any{"Rows": all, "Open": open, "Now": a.Now()})
	if err != nil {
		return err
	}
	return c.HTMLBlob(http.StatusOK, b.Bytes())
}
