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

// indexTmpl is the incidents page; html/template escapes what the alerts and the operators
// say. Its script holds no template action: it reads what it needs from data attributes.
var indexTmpl = template.Must(template.New("index").Funcs(template.FuncMap{
	"stamp": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ago": func(now, t time.Time) string { return now.Sub(t).Round(time.Second).String() },
	// The page offers a control only where the worker would take it; the worker decides all
	// the same (remediator.Incident's RequestCancel and Retry), and the page shows its refusal.
	"cancellable": func(inc *remediator.Incident) bool { return !inc.State.Terminal() },
	"retriable": func(inc *remediator.Incident) bool {
		return (inc.State == remediator.StateFailed || inc.State == remediator.StateCancelled) && !inc.Closed()
	},
}).Parse(indexHTML))

// indexPage is what the incidents page shows.
type indexPage struct {
	Rows []*remediator.Incident
	Open int
	Now  time.Time
	Next string
	// Status is every configured cluster, its pause and its etcd's reachability, as GET
	// /api/v1/clusters tells them; Reach says whether anything checks reachability.
	Status Clusters
	Reach  bool
	// Operators says whether the operator API is on: only then does the page offer controls.
	Operators bool
}

// index serves the incidents page: the pauses in force and each cluster's etcd, then the open
// incidents (a remediation running or waiting, or alerts still firing), then the closed ones,
// the newest first in each. It reads what is open and one page of the rest, with a link to
// the next page: never everything. With the operator API on, it offers an operator's controls.
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
	status, err := a.clusterStatus(ctx)
	if err != nil {
		return err
	}
	next := ""
	if page.Next != "" {
		next = "?" + url.Values{"cursor": {page.Next}, "state": {string(q.State)}, "cluster": {q.Cluster}}.Encode()
	}
	var b bytes.Buffer
	err = indexTmpl.Execute(&b, indexPage{
		Rows: all, Open: open, Now: a.Now(), Next: next,
		Status: status, Reach: a.Reachability != nil, Operators: a.operatorAPI(),
	})
	if err != nil {
		return err
	}
	return c.HTMLBlob(http.StatusOK, b.Bytes())
}
