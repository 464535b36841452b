package queue

import (
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/remediator/remediator"
)

// embeddedMaxPayload lets a webhook at the intake's 1 MiB limit through once normalised.
const embeddedMaxPayload = 4 << 20

// agentResponseFor is how long after an agent received a request it may still answer it:
// longer than any action waits (a data dir copy of several GiB, a slow restore).
const agentResponseFor = time.Hour

// startEmbedded starts a NATS server with JetStream whose streams live as files under dir. It
// listens on opts.Listen for node agents, always with TLS and client certificates, or, with
// no address, on no port at all: the service talks to it in process. Every client, in process
// or not, authenticates with an nkey: the service's own may connect only in process and may do
// everything; an agent's may only take the requests of its own subject and answer them.
func startEmbedded(o Options) (*server.Server, error) {
	dir := o.StoreDir
	if dir == "" {
		return nil, fmt.Errorf("queue: the embedded NATS server needs a store directory")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	users, err := embeddedUsers(o)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: "remediator-embedded",
		DontListen: o.Listen == "",
		JetStream:  true,
		StoreDir:   abs,
		MaxPayload: embeddedMaxPayload,
		NoSigs:     true,
		Nkeys:      users,
		// The store is bounded, so that JetStream cannot take the disk it shares with etcd
		// snapshots; every stream's limit is reserved from it.
		JetStreamMaxStore: o.MaxStore,
		// Every write reaches the disk before it is acknowledged, unless told otherwise: a
		// webhook answered 202 survives a power loss.
		SyncAlways:   o.SyncInterval == 0,
		SyncInterval: o.SyncInterval,
	}
	if o.Listen != "" {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("queue: listen address %q: %w", o.Listen, err)
		}
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("queue: listen address %q: %w", o.Listen, err)
		}
		opts.Host = host
		t := o.TLS
		if t.CertFile == "" || t.KeyFile == "" || t.CAFile == "" {
			return nil, remediator.Errorf(remediator.EINVALID, "queue: the embedded server listens only with TLS: a certificate, its key and the CA of its clients' certificates")
		}
		opts.TLSConfig, err = server.GenTLSConfig(&server.TLSConfigOpts{CertFile: t.CertFile, KeyFile: t.KeyFile, CaFile: t.CAFile, Verify: true})
		if err != nil {
			return nil, fmt.Errorf("queue: embedded server TLS: %w", err)
		}
		opts.TLS, opts.TLSVerify, opts.TLSTimeout = true, true, 5
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("queue: embedded NATS server: %w", err)
	}
	ns.SetLoggerV2(natsLogger{o.Log.With("component", "nats")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, remediator.Errorf(remediator.EUNAVAILABLE, "queue: embedded NATS server in %s did not start within 30s", abs)
	}
	return ns, nil
}

// embeddedUsers are the embedded server's clients: the service, in process only, and each
// node agent with its own subject.
func embeddedUsers(o Options) ([]*server.NkeyUser, error) {
	users := []*server.NkeyUser{{
		Nkey:                   publicKey(o.Key),
		AllowedConnectionTypes: map[string]struct{}{jwt.ConnectionTypeInProcess: {}},
	}}
	for _, id := range slices.Sorted(maps.Keys(o.Agents)) {
		cluster, node, _ := strings.Cut(id, "/")
		subject, err := AgentSubject(cluster, node)
		if err != nil {
			return nil, err
		}
		users = append(users, &server.NkeyUser{
			Nkey:                   o.Agents[id],
			Permissions:            AgentPermissions(subject),
			AllowedConnectionTypes: map[string]struct{}{jwt.ConnectionTypeStandard: {}},
		})
	}
	return users, nil
}

// AgentPermissions let an agent take the requests sent to its subject and answer each once;
// it can publish nothing else and subscribe to nothing else. The embedded server gives them,
// and `remediator nats server-config` writes them for an external one.
func AgentPermissions(subject string) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Deny: []string{">"}},
		Subscribe: &server.SubjectPermission{Allow: []string{subject}},
		Response:  &server.ResponsePermission{MaxMsgs: 1, Expires: agentResponseFor},
	}
}

// natsLogger sends the embedded server's log to slog.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
