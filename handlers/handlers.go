// Package handlers is remediator's HTTP surface: the webhook intake, which validates and
// enqueues and never does the work itself, the incidents API, health and metrics.
package handlers

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/remediator/remediator"
)

// DefaultMaxBodyBytes is the largest webhook body accepted.
const DefaultMaxBodyBytes = 1 << 20

// Publisher enqueues a message durably, once per msgID.
type Publisher interface {
	Publish(ctx context.Context, subject string, data []byte, msgID string) (duplicate bool, err error)
}

// Incidents reads incidents.
type Incidents interface {
	Get(ctx context.Context, id string) (*remediator.Incident, error)
	// List returns a page of incidents, the newest first.
	List(ctx context.Context, q remediator.Query) (remediator.Page, error)
	// Open returns the incidents not over yet.
	Open(ctx context.Context) ([]*remediator.Incident, error)
}

// Reporter renders an incident's report in a format ("md", "html" or "json").
type Reporter interface {
	Render(inc *remediator.Incident, format string) (contentType string, body []byte, err error)
}

// Config is what the handlers need.
type Config struct {
	Publisher Publisher
	// AlertsSubject is where alert batches are published.
	AlertsSubject string
	Incidents     Incidents
	Reports       Reporter
	// Ready reports whether the service can take work (the queue is reachable).
	Ready func(ctx context.Context) error
	// Clusters are the configured cluster names, to resolve an alert's cluster.
	Clusters []string
	// TrustedObjects are the objects beside the control plane's pods whose Kubernetes
	// events may open incidents.
	TrustedObjects []KubeObject
	// BearerToken, when set, must be presented by webhook senders.
	BearerToken string
	// OperatorToken, when set, lets operators approve and reject over the API, naming
	// themselves; Operators maps operator names to tokens of their own, which name them.
	// With either, every read (the incidents page, the API, reports) needs one of them too.
	OperatorToken string
	Operators     map[string]string
	// MetricsToken, when set, is the token GET /metrics needs.
	MetricsToken string
	// Answers records approvals and rejections; Controls are the operators' other hands on
	// the runs (close, cancel, retry, pause, resume).
	Answers  Answerer
	Controls Controls
	// Reachability says, per cluster, whether its etcd answered when last asked, for /readyz
	// and the clusters API; nil if nothing checks.
	Reachability func(ctx context.Context) []Reachability
	// SlackSigningSecret, when set, turns on Slack's HTTP endpoints (interactions, the
	// /remediator command, events); answers given in Slack, over HTTP or Socket Mode, go to
	// AnswersSubject, and App Home requests to NotifySubject.
	SlackSigningSecret string
	AnswersSubject     string
	NotifySubject      string
	// ChatMembers tells the workspace's full members, whom /remediator answers, from guests;
	// People maps Slack user IDs to operators, whom it answers too. Without ChatMembers,
	// /remediator answers only People.
	ChatMembers ChatMembers
	People      map[string]string
	// Explainer answers /remediator simulate; nil turns it off.
	Explainer Explainer
	// BaseURL is where humans reach remediator, for links in Slack.
	BaseURL string
	// HealthOnly serves /healthz, /readyz and /metrics alone: a worker's port, which takes no
	// webhook, answer or read.
	HealthOnly bool
	// Replays remembers Slack requests, against replays.
	Replays      Replays
	MaxBodyBytes int64
	Registry     *prometheus.Registry
	Log          *slog.Logger
	Now          func() time.Time
}

type api struct {
	Config
	webhooks *prometheus.CounterVec
}

// Intake is remediator's intake: the HTTP handler with every route, and Slack's Socket Mode.
type Intake struct {
	*echo.Echo
	api *api
}

// New returns the intake.
func New(cfg Config) *Intake {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	a := &api{
		Config: cfg,
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "remediator_webhooks_received_total",
			Help: "Webhook requests received, by source and outcome.",
		}, []string{"source", "outcome"}),
	}
	cfg.Registry.MustRegister(a.webhooks)

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = a.handleError

	if !cfg.HealthOnly {
		a.routes(e)
	}
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", a.ready)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{})), a.scrapers)
	return &Intake{Echo: e, api: a}
}

// routes are the intake's: the webhooks, the incidents API and page, Slack.
func (a *api) routes(e *echo.Echo) {
	e.GET("/", a.index, a.readers)
	e.POST("/webhooks/alertmanager", a.alertmanager)
	e.POST("/webhooks/kubernetes", a.kubernetes)
	e.GET("/api/v1/incidents", a.listIncidents, a.readers)
	e.GET("/api/v1/incidents/:id", a.getIncident, a.readers)
	e.GET("/api/v1/incidents/:id/report", a.getReport, a.readers)
	e.POST("/api/v1/incidents/:id/approve", a.answer(true))
	e.POST("/api/v1/incidents/:id/reject", a.answer(false))
	e.POST("/api/v1/incidents/:id/close", a.closeIncident)
	e.POST("/api/v1/incidents/:id/cancel", a.cancelIncident)
	e.POST("/api/v1/incidents/:id/retry", a.retryIncident)
	e.GET("/api/v1/clusters", a.listClusters, a.readers)
	e.POST("/api/v1/clusters/:name/pause", a.pauseCluster)
	e.POST("/api/v1/clusters/:name/resume", a.resumeCluster)
	if a.SlackSigningSecret != "" {
		e.POST("/slack/interactions", a.slackInteraction)
		e.POST("/slack/commands", a.slackCommand)
		e.POST("/slack/events", a.slackEvents)
	}
}

// readers lets through reads by operators, when the operator API is on: an incident tells
// how a cluster broke and what remediator did to it. A browser sends the token as the
// password of HTTP basic authentication, which it asks for.
func (a *api) readers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !a.operatorAPI() {
			return next(c)
		}
		got := presented(c.Request())
		if got == "" {
			return remediator.Errorf(remediator.EUNAUTHORIZED, "reading incidents needs an operator token: Authorization: Bearer <token>, or the token as the password of basic authentication")
		}
		if name, shared := a.tokenOf(got); name == "" && !shared {
			return remediator.Errorf(remediator.EUNAUTHORIZED, "wrong operator token")
		}
		return next(c)
	}
}

// scrapers lets through scrapes of /metrics with its token, when one is configured.
func (a *api) scrapers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if a.MetricsToken == "" {
			return next(c)
		}
		if got := presented(c.Request()); got == "" || !sameSecret(got, a.MetricsToken) {
			return remediator.Errorf(remediator.EUNAUTHORIZED, "missing or wrong metrics token (api.metrics_token_file)")
		}
		return next(c)
	}
}

// presented is the token a request presents: as a bearer token, or as the password of basic
// authentication.
func presented(r *http.Request) string {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return tok
	}
	if _, password, ok := r.BasicAuth(); ok {
		return password
	}
	return ""
}

// statusOf maps an error code to its HTTP status; this is the only place that does.
func statusOf(err error) int {
	switch remediator.ErrorCode(err) {
	case remediator.EINVALID:
		return http.StatusBadRequest
	case remediator.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case remediator.EFORBIDDEN:
		return http.StatusForbidden
	case remediator.ENOTFOUND:
		return http.StatusNotFound
	case remediator.ECONFLICT, remediator.EREFUSED:
		return http.StatusConflict
	case remediator.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case remediator.EPRECONDITION:
		return http.StatusUnprocessableEntity
	case remediator.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// CodeOfStatus is the error code of an HTTP status that came without remediator's error body
// (from a proxy in front of it, say): statusOf read backwards, a gateway's failure as the
// service being unreachable.
func CodeOfStatus(status int) string {
	if status == http.StatusBadGateway || status == http.StatusGatewayTimeout {
		return remediator.EUNAVAILABLE
	}
	for _, code := range []string{remediator.EINVALID, remediator.EUNAUTHORIZED, remediator.EFORBIDDEN, remediator.ENOTFOUND,
		remediator.EREFUSED, remediator.ETOOLARGE, remediator.EPRECONDITION, remediator.EUNAVAILABLE} {
		if statusOf(remediator.Errorf(code, "")) == status {
			return code
		}
	}
	return remediator.EINTERNAL
}

// errorBody is every error response.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func (a *api) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	if errors.As(err, &he) { // echo's own: no route, wrong method
		msg, _ := he.Message.(string)
		_ = c.JSON(he.Code, errorBody{Error: msg, Code: strings.ReplaceAll(strings.ToLower(http.StatusText(he.Code)), " ", "_")})
		return
	}
	status := statusOf(err)
	msg := err.Error()
	switch {
	case status == http.StatusInternalServerError:
		a.Log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
		msg = "internal error; see the service log"
	case status >= http.StatusInternalServerError:
		a.Log.Warn("request failed", "method", c.Request().Method, "path", c.Path(), "status", status, "err", err)
	}
	if status == http.StatusUnauthorized {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="remediator"`)
		if c.Request().Method == http.MethodGet {
			// So that a browser asks for the token.
			c.Response().Header().Add("WWW-Authenticate", `Basic realm="remediator", charset="UTF-8"`)
		}
	}
	_ = c.JSON(status, errorBody{Error: msg, Code: remediator.ErrorCode(err)})
}

// refused counts and logs a request an intake refused, and returns the error for
// handleError to answer (and to log, if it is not the sender's fault).
func (a *api) refused(source string, err error) error {
	a.webhooks.WithLabelValues(source, remediator.ErrorCode(err)).Inc()
	if status := statusOf(err); status < http.StatusInternalServerError {
		a.Log.Warn("request refused", "source", source, "status", status, "err", err)
	}
	return err
}

// readBody reads the request body up to limit bytes; a longer one is ETOOLARGE.
func readBody(c echo.Context, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, remediator.Errorf(remediator.ETOOLARGE, "body is over the %d byte limit", limit)
	case err != nil:
		return nil, remediator.Errorf(remediator.EINVALID, "reading body: %v", err)
	}
	return body, nil
}

// authorize checks the bearer token, if one is configured.
func (a *api) authorize(r *http.Request) error {
	if a.BearerToken == "" {
		return nil
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return remediator.Errorf(remediator.EUNAUTHORIZED, "missing bearer token: send Authorization: Bearer <token>")
	}
	if !sameSecret(got, a.BearerToken) {
		return remediator.Errorf(remediator.EUNAUTHORIZED, "wrong bearer token")
	}
	return nil
}

// sameSecret compares secrets in constant time, their lengths included.
func sameSecret(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// Reachability is whether a cluster's etcd answered when last asked.
type Reachability struct {
	Cluster   string    `json:"cluster"`
	Reachable bool      `json:"reachable"`
	Endpoint  string    `json:"endpoint,omitempty"`
	Error     string    `json:"error,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

// ready is ready when the queue is: webhooks can be taken even while a cluster's etcd is down
// (that is when they matter). It tells the truth about each cluster all the same, by name
// only: anyone who reaches the port may ask, and the endpoints and errors are for operators
// (GET /api/v1/clusters).
func (a *api) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := a.Ready(ctx); err != nil {
		return remediator.Errorf(remediator.EUNAVAILABLE, "not ready: %v", err)
	}
	var b strings.Builder
	b.WriteString("ready\n")
	if a.Reachability != nil {
		for _, r := range a.Reachability(ctx) {
			ago := a.Now().Sub(r.CheckedAt).Round(time.Second)
			if r.Reachable {
				fmt.Fprintf(&b, "cluster %s: etcd reachable (checked %s ago)\n", r.Cluster, ago)
				continue
			}
			fmt.Fprintf(&b, "cluster %s: etcd unreachable (checked %s ago; why: remediator clusters); webhooks are still taken, and its remediations retry\n", r.Cluster, ago)
		}
	}
	return c.String(http.StatusOK, b.String())
}
