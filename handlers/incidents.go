package handlers

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/remediator/remediator"
)

// listIncidents serves a page of incidents, the newest first: ?state=&cluster=&limit=&cursor=,
// with next_cursor for the page after.
func (a *api) listIncidents(c echo.Context) error {
	q, err := query(c)
	if err != nil {
		return err
	}
	page, err := a.Incidents.List(c.Request().Context(), q)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, page)
}

// query reads a page query from the URL, refusing what it cannot mean.
func query(c echo.Context) (remediator.Query, error) {
	q := remediator.Query{State: remediator.State(c.QueryParam("state")), Cluster: c.QueryParam("cluster"), Cursor: c.QueryParam("cursor")}
	if q.State != "" && !slices.Contains(remediator.States, q.State) {
		return q, remediator.Errorf(remediator.EINVALID, "state %q: not a state (states: %s)", q.State, joinStates())
	}
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > remediator.MaxPageSize {
			return q, remediator.Errorf(remediator.EINVALID, "limit %q: must be a number from 1 to %d", l, remediator.MaxPageSize)
		}
		q.Limit = n
	}
	return q, nil
}

func joinStates() string {
	names := make([]string, len(remediator.States))
	for i, s := range remediator.States {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func (a *api) getIncident(c echo.Context) error {
	inc, err := a.Incidents.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, inc)
}

func (a *api) getReport(c echo.Context) error {
	inc, err := a.Incidents.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	format := c.QueryParam("format")
	if format == "" {
		format = "md"
	}
	contentType, body, err := a.Reports.Render(inc, format)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, contentType, body)
}
