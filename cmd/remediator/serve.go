package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/handlers"
	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/internal/report"
	"github.com/remediator/remediator/internal/worker"
	slacknotify "github.com/remediator/remediator/notify/slack"
	"github.com/remediator/remediator/policies"
	"github.com/remediator/remediator/queue"
	"github.com/remediator/remediator/remediations"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/keyguard"
	"github.com/remediator/remediator/remediations/nodeops"
)

// trustedObjects are the objects beside the control plane's pods whose Kubernetes events may
// open incidents.
func trustedObjects(cfg config.Config) []handlers.KubeObject {
	trusted := make([]handlers.KubeObject, len(cfg.Kubernetes.TrustedObjects))
	for i, o := range cfg.Kubernetes.TrustedObjects {
		trusted[i] = handlers.KubeObject{Namespace: o.Namespace, Kind: o.Kind, NamePrefix: o.NamePrefix}
	}
	return trusted
}

// shutdownGrace is how long running steps may take to finish when the service stops; after it
// they are cancelled and their work goes back to the queue for the next worker.
const shutdownGrace = 20 * time.Second

// What one serve process does (serve --role).
const (
	// RoleAll is everything in one process: the intake and the workers (the default, and the
	// only role the embedded NATS allows).
	RoleAll = "all"
	// RoleIntake is the HTTP surface alone: webhooks, Slack (HTTP and Socket Mode), the API
	// and the pages. It holds no consumer: it enqueues, and workers elsewhere act.
	RoleIntake = "intake"
	// RoleWorker holds the consumers (correlation, runs, approvals' deadlines, notifications,
	// guarded keys, a one-node agent); its port serves /healthz, /readyz and /metrics alone.
	RoleWorker = "worker"
)

// Roles lists the roles serve takes.
var Roles = []string{RoleAll, RoleIntake, RoleWorker}

// Main is the whole service, wired from its configuration.
type Main struct {
	Config config.Config
	// Role is what this process does (RoleAll if empty).
	Role string
	Log  *slog.Logger
	// Addr is the HTTP address, known once Run has returned.
	Addr string

	queue  *queue.Queue
	etcd   *etcdops.Clients
	server *http.Server
	cancel context.CancelFunc
	// draining is set once Close begins: runs hand their next step back to the queue.
	draining atomic.Bool
	workers  sync.WaitGroup
}

// NewMain loads the configuration (defaults only when path is empty).
func NewMain(path string, getenv func(string) string, log *slog.Logger) (*Main, error) {
	cfg, err := config.Load(path, getenv)
	if err != nil {
		return nil, err
	}
	return &Main{Config: cfg, Log: log}, nil
}

// Run starts the service and returns once it is serving; Close stops it.
func (m *Main) Run(ctx context.Context) error {
	cfg := m.Config
	role := m.Role
	if role == "" {
		role = RoleAll
	}
	switch {
	case !slices.Contains(Roles, role):
		return remediator.Errorf(remediator.EINVALID, "serve: --role %q: must be one of %s", role, strings.Join(Roles, ", "))
	case role != RoleAll && cfg.NATS.URL == "":
		return remediator.Errorf(remediator.EINVALID, "serve: --role %s needs nats.url: the embedded NATS lives in this process, so no %s elsewhere could share its queue; run --role all, or give every process the same NATS",
			role, map[string]string{RoleIntake: "worker", RoleWorker: "intake"}[role])
	}
	intake, working := role != RoleWorker, role != RoleIntake
	if !cfg.SecretsLoaded() {
		// A token file named but not read is an empty token: its door would stand open.
		return fmt.Errorf("serve: the configuration's secret files were not read (config.Load reads them): not serving with doors that an empty token leaves open")
	}
	clusters := make([]etcdops.ClusterConfig, len(cfg.Clusters))
	for i, c := range cfg.Clusters {
		clusters[i] = etcdops.ClusterConfig{Name: c.Name, Endpoints: c.Etcd.Endpoints,
			CAFile: c.Etcd.TLS.CAFile, CertFile: c.Etcd.TLS.CertFile, KeyFile: c.Etcd.TLS.KeyFile}
	}
	m.etcd = etcdops.NewClients(clusters)
	key, err := serviceKey(cfg)
	if err != nil {
		return err
	}
	m.queue, err = queue.Open(ctx, queue.Options{
		URL:          cfg.NATS.URL,
		Key:          key,
		CredsFile:    cfg.NATS.CredsFile,
		TLS:          natsTLS(cfg),
		Insecure:     cfg.NATS.Insecure,
		PreviousKeys: cfg.NATS.PreviousKeys,
		Agents:       cfg.NATS.Agents,
		StoreDir:     filepath.Join(cfg.DataDir, "nats"),
		Listen:       cfg.NATS.Listen,
		Replicas:     cfg.NATS.Replicas,
		AckWait:      time.Duration(cfg.NATS.AckWait),
		MaxDeliver:   cfg.NATS.MaxDeliver,
		MaxWaiting:   cfg.NATS.MaxWaiting,
		Limits:       natsLimits(cfg),
		MaxStore:     int64(cfg.NATS.MaxStore),
		SyncInterval: time.Duration(cfg.NATS.SyncInterval),
		Log:          m.Log,
	})
	if err != nil {
		return err
	}
	nodes := &nodeops.Nodes{Agents: m.queue.Agents(), Names: map[string]map[string]string{}}
	for _, c := range cfg.Clusters {
		nodes.Names[c.Name] = c.Nodes
	}
	catalog := remediations.New(remediations.Deps{Etcd: m.etcd, Nodes: nodes, Guarded: m.queue.Guarded,
		BackupDir: filepath.Join(cfg.DataDir, "backups")})
	pols, err := loadPolicies(cfg.PoliciesDir, catalog)
	if err != nil {
		m.queue.Close()
		return err
	}

	var (
		w             *worker.Worker
		notifier      *slacknotify.Notifier
		groups        worker.GroupResolver
		members       worker.MemberResolver
		notifySubject string
	)
	if cfg.Slack.Enabled() {
		notifier = slacknotify.New(slacknotify.Config{Token: cfg.Slack.BotToken, Channel: cfg.Slack.Channel,
			APIURL: cfg.Slack.APIURL, BaseURL: cfg.BaseURL(), Incidents: m.queue.Incidents, Log: m.Log,
			Open: m.queue.Incidents.Open,
			MayAnswer: func(ctx context.Context, inc *remediator.Incident, userID string) bool {
				return w.MayAnswer(ctx, inc, userID)
			}})
		groups, members, notifySubject = notifier, notifier, queue.SubjectNotify
	}
	tokens, people := map[string]string{}, map[string]string{}
	for name, o := range cfg.API.Operators {
		tokens[name] = o.Token
		if o.SlackID != "" {
			people[o.SlackID] = name
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(m.queue.Collectors()...)
	reg.MustRegister(buildInfo())
	w = worker.New(worker.Config{
		Store:         m.queue.Incidents,
		Publisher:     m.queue,
		Locks:         m.queue.Locks,
		RunSubject:    queue.SubjectRun,
		ExpireSubject: queue.SubjectExpire,
		NotifySubject: notifySubject,
		Policies:      pols,
		Remediations:  catalog,
		Groups:        groups,
		Members:       members,
		People:        people,
		Pauses:        m.queue.Pauses,
		RetryDelay:    m.queue.RetryDelay,
		Draining:      m.draining.Load,
		DryRun:        cfg.DryRun,
		Registry:      reg,
		Log:           m.Log,
	})
	// What serve can reach of each cluster, told at start and on /readyz.
	var reachability func(context.Context) []handlers.Reachability
	if intake {
		clusterReach := newReach(m.etcd, cfg.ClusterNames(), m.Log)
		go clusterReach.check(ctx)
		reachability = clusterReach.Reachability
	}
	h := handlers.New(handlers.Config{
		TrustedObjects:     trustedObjects(cfg),
		Publisher:          m.queue,
		AlertsSubject:      queue.SubjectAlerts,
		Incidents:          m.queue.Incidents,
		Reports:            report.Renderer{},
		Ready:              m.queue.Ready,
		Clusters:           cfg.ClusterNames(),
		BearerToken:        cfg.Webhook.BearerToken,
		OperatorToken:      cfg.API.BearerToken,
		Operators:          tokens,
		MetricsToken:       cfg.API.MetricsToken,
		Answers:            w,
		Controls:           w,
		Reachability:       reachability,
		SlackSigningSecret: cfg.Slack.SigningSecret,
		AnswersSubject:     queue.SubjectAnswer,
		NotifySubject:      notifySubject,
		ChatMembers:        members,
		People:             people,
		Explainer:          w,
		BaseURL:            cfg.BaseURL(),
		HealthOnly:         !intake,
		Replays:            m.queue,
		Registry:           reg,
		Log:                m.Log,
	})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		m.Close()
		return fmt.Errorf("listen: %w", err)
	}
	m.Addr = ln.Addr().String()
	m.server = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	if t := cfg.TLS; t.Enabled() {
		if m.server.TLSConfig, err = handlers.TLSConfig(t.CertFile, t.KeyFile); err != nil {
			ln.Close()
			m.Close()
			return fmt.Errorf("tls: %w", err)
		}
		ln = tls.NewListener(ln, m.server.TLSConfig)
	}
	go func() {
		if err := m.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Log.Error("http server stopped", "err", err)
		}
	}()

	workCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	if working {
		if err := m.work(workCtx, cfg, w, notifier); err != nil {
			m.Close()
			return err
		}
	}
	if intake && notifier != nil && cfg.Slack.AppToken != "" {
		// Socket Mode: remediator opens the connection to Slack, which needs no way in.
		m.workers.Add(1)
		go func() {
			defer m.workers.Done()
			h.RunSocket(workCtx, notifier.SocketMode(cfg.Slack.AppToken))
		}()
	}

	switch {
	case cfg.NATS.AgentsFile != "" && len(cfg.NATS.Agents) == 0:
		m.Log.Warn("nats.agents_file names no agent yet: no node agent can answer (remediator agent credentials adds them)", "agents_file", cfg.NATS.AgentsFile)
	case cfg.NATS.URL != "" && cfg.NATS.AgentsFile == "":
		m.Log.Warn("no nats.agents_file: no node agent's reply is trusted, so node-local steps fail")
	}
	if cfg.NATS.URL != "" && cfg.NATS.IdentityFile() == "" {
		m.Log.Warn("no nats.nkey_file: this replica signs with a key of its own (data_dir/service.nk), which other replicas do not trust: give every replica the same nats.nkey_file")
	}
	nats := remediator.RedactURL(cfg.NATS.URL)
	if nats == "" {
		nats = "embedded"
	}
	m.Log.Info("remediator serving", "role", role, "addr", m.Addr, "nats", nats, "service_key", m.queue.PublicKey(), "data_dir", cfg.DataDir,
		"clusters", cfg.ClusterNames(), "policies", len(pols.Policies()), "slack", cfg.Slack.Enabled(), "dry_run", cfg.DryRun)
	return nil
}

// work starts the worker's part of serve until workCtx ends: the consumers (correlation,
// runs, answers, deadlines, notifications), the waits, the archive, the guarded keys and a
// one-node agent.
func (m *Main) work(workCtx context.Context, cfg config.Config, w *worker.Worker, notifier *slacknotify.Notifier) error {
	consume := func(c queue.Consumer, workers int, h, forged queue.Handler) {
		m.workers.Add(1)
		go func() {
			defer m.workers.Done()
			if err := m.queue.Consume(workCtx, c, workers, shutdownGrace, h, forged); err != nil {
				m.Log.Error("consumer stopped", "err", err)
			}
		}()
	}
	// Alerts of many webhooks for one incident join it in one update.
	m.workers.Add(1)
	go func() {
		defer m.workers.Done()
		err := m.queue.ConsumeBatches(workCtx, queue.Correlator, correlatorBatch, shutdownGrace, func(ctx context.Context, ds []queue.Delivery) error {
			data := make([][]byte, len(ds))
			for i, d := range ds {
				data[i] = d.Data
			}
			return w.Correlate(ctx, data...)
		}, nil)
		if err != nil {
			m.Log.Error("consumer stopped", "err", err)
		}
	}()
	m.workers.Add(2)
	go func() {
		defer m.workers.Done()
		if err := m.queue.RunWaits(workCtx, shutdownGrace); err != nil {
			m.Log.Error("waits stopped", "err", err)
		}
	}()
	go func() {
		defer m.workers.Done()
		m.archive(workCtx, time.Duration(cfg.Retention))
	}()
	consume(queue.Executor, executorSlots(len(cfg.Clusters)), func(ctx context.Context, d queue.Delivery) error {
		switch d.Subject {
		case queue.SubjectRun:
			return w.Execute(ctx, d.Data)
		case queue.SubjectExpire:
			return w.Expire(ctx, d.Data)
		case queue.SubjectAnswer:
			return w.AnswerFromChat(ctx, d.Data)
		}
		return remediator.Errorf(remediator.EINVALID, "no handler for subject %s", d.Subject)
	}, func(ctx context.Context, d queue.Delivery) error {
		if d.Subject == queue.SubjectAnswer {
			return w.RefuseForgedAnswer(ctx, d.Data, d.Forged)
		}
		return nil
	})
	for _, c := range cfg.Clusters {
		if len(c.GuardedKeys) > 0 {
			if err := m.guard(workCtx, c.Name, c.GuardedKeys); err != nil {
				return err
			}
		}
	}
	if cfg.Agent.Node != "" {
		// A one-node setup: this process is also the node's agent.
		acfg, err := agentConfig(cfg, "", m.Log)
		if err != nil {
			return err
		}
		acfg.ServiceKeys = nil // it obeys this process's own key
		m.workers.Add(1)
		go func() {
			defer m.workers.Done()
			if err := runAgent(workCtx, m.queue.AgentConn(), acfg); err != nil {
				m.Log.Error("node agent stopped", "err", err)
			}
		}()
	}
	if notifier != nil {
		// One at a time: a message and its thread are updated in order.
		consume(queue.Notifier, 1, func(ctx context.Context, d queue.Delivery) error { return notifier.Handle(ctx, d.Data) }, nil)
	}
	return nil
}

// executorSlots is how many runs, answers and deadlines a worker handles at once: a run
// holds its slot while its steps wait on etcd, and each cluster runs one remediation at a
// time, so every cluster gets one, plus as many again for answers and deadlines.
func executorSlots(clusters int) int { return max(8, 2*clusters) }

// correlatorBatch is how many enqueued webhooks the correlator takes at once.
const correlatorBatch = 128

// archiveEvery is how often closed incidents past the retention move to the archive.
const archiveEvery = time.Hour

// archive moves closed incidents past the retention to the archive, at start and then
// every archiveEvery, until ctx ends. Every replica does it; a pass is safe beside another.
func (m *Main) archive(ctx context.Context, retention time.Duration) {
	for {
		n, err := m.queue.Archive(ctx, retention, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			m.Log.Warn("archiving closed incidents failed; trying again later", "err", err)
		case n > 0:
			m.Log.Info("closed incidents past the retention archived", "incidents", n, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(archiveEvery):
		}
	}
}

// natsLimits is the nats.limits section as the queue takes it.
func natsLimits(cfg config.Config) map[string]queue.Limit {
	out := map[string]queue.Limit{}
	for name, l := range cfg.NATS.Limits {
		out[name] = queue.Limit{MaxBytes: int64(l.MaxBytes), MaxAge: time.Duration(l.MaxAge)}
	}
	return out
}

// guard watches a cluster's guarded keys, keeps their values, and reports a lost one as an
// alert through the same queue as Alertmanager's, to be correlated like any other.
func (m *Main) guard(ctx context.Context, cluster string, keys []string) error {
	cl, err := m.etcd.Get(cluster)
	if err != nil {
		return err
	}
	report := keyguard.ReporterFunc(func(ctx context.Context, l keyguard.Loss) error {
		data, err := json.Marshal(remediator.Batch{ID: l.ID(), Source: "keyguard", ReceivedAt: l.At, Alerts: []remediator.Alert{l.Alert()}})
		if err != nil {
			return err
		}
		_, err = m.queue.Publish(ctx, queue.SubjectAlerts, data, l.ID())
		return err
	})
	g, err := keyguard.NewGuard(keyguard.GuardConfig{Cluster: cluster, Keys: keys}, cl, m.queue.Guarded, report, m.Log)
	if err != nil {
		return fmt.Errorf("clusters[%s].guarded_keys: %w", cluster, err)
	}
	m.workers.Add(1)
	go func() {
		defer m.workers.Done()
		g.Run(ctx)
	}()
	return nil
}

// serviceKey is serve's identity on NATS, which signs what it publishes and asks of agents:
// nats.nkey_file, or the seed of nats.creds_file. With neither (the embedded server, or an
// insecure NATS), a key made on the first start and kept in data_dir, so that what it signed
// before a restart still counts after.
func serviceKey(cfg config.Config) (nkeys.KeyPair, error) {
	if f := cfg.NATS.IdentityFile(); f != "" {
		return config.ReadSeed(f)
	}
	path := filepath.Join(cfg.DataDir, "service.nk")
	if _, err := os.Stat(path); err == nil {
		return config.ReadSeed(path)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, err
	}
	return config.WriteSeed(path)
}

// natsTLS is the nats.tls section as the queue takes it.
func natsTLS(cfg config.Config) queue.TLSFiles {
	t := cfg.NATS.TLS
	return queue.TLSFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}
}

func loadPolicies(dir string, catalog *remediations.Catalog) (*policies.Set, error) {
	if dir == "" {
		return policies.Default(catalog)
	}
	return policies.LoadDir(dir, catalog)
}

// Close stops taking requests, lets running steps finish (up to a grace period) and hands
// the rest of their runs back to the queue, for another worker, and closes the connections.
func (m *Main) Close() error {
	m.draining.Store(true)
	var errs []error
	if m.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, m.server.Shutdown(ctx))
		cancel()
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.workers.Wait()
	if m.etcd != nil {
		errs = append(errs, m.etcd.Close())
	}
	if m.queue != nil {
		m.queue.Close()
	}
	return errors.Join(errs...)
}
