package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/remediator/remediator"
)

func (a *api) listIncidents(c echo.Context) error {
	all, err := a.Incidents.List(c.Request().Context())
	if err != nil {
		return err
	}
	state := remediator.State(c.QueryParam("state"))
	out := make([]*remediator.Incident, 0, len(all))
	for _, inc := range all {
		if state == "" || inc.State == state {
			out = append(out, inc)
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"incidents": out})
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
