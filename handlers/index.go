package handlers

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/http"
	"net/url"
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
// waiting, or alerts still firing), then the closed ones, the newest first in each. It reads
// what is open and one page of the rest, with a link to the next page: never everything.
func (a *api) index(c echo.Context) error {
	ctx := c.Request().Context()
	q, err := query(c)
	if err != nil {
		return err
	}
	var all []*remediator.Incident
	if q.Cursor == "" {
		if all, err = a.Incidents.Open(ctx); err != nil {
			return err
		}
	}
	page, err := a.Incidents.List(ctx, q)
	if err != nil {
		return err
	}
	for _, inc := range page.Incidents {
		if !slices.ContainsFunc(all, func(o *remediator.Incident) bool { return o.ID == inc.ID }) {
			all = append(all, inc)
		}
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
	next := ""
	if page.Next != "" {
		next = "?" + url.Values{"cursor": {page.Next}, "state": {string(q.State)}, "cluster": {q.Cluster}}.Encode()
	}
	err = indexTmpl.Execute(&b, map[string]any{"Rows": all, "Open": open, "Now": a.Now(), "Next": next})
	if err != nil {
		return err
	}
	return c.HTMLBlob(http.StatusOK, b.Bytes())
}
