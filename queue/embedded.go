package queue

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/remediator/remediator"
)

// embeddedMaxPayload lets a webhook at the intake's 1 MiB limit through once normalised.
const embeddedMaxPayload = 4 << 20

// startEmbedded starts a NATS server with JetStream whose streams live as files under dir. It
// listens on listen (host:port) for node agents, or, with none, on no port at all: the service
// talks to it in process.
func startEmbedded(dir, listen string, log *slog.Logger) (*server.Server, error) {
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
	opts := &server.Options{
		ServerName: "remediator-embedded",
		DontListen: listen == "",
		JetStream:  true,
		StoreDir:   abs,
		MaxPayload: embeddedMaxPayload,
		NoSigs:     true,
	}
	if listen != "" {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("queue: listen address %q: %w", listen, err)
		}
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("queue: listen address %q: %w", listen, err)
		}
		opts.Host = host
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("queue: embedded NATS server: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log.With("component", "nats")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, remediator.Errorf(remediator.EUNAVAILABLE, "queue: embedded NATS server in %s did not start within 30s", abs)
	}
	return ns, nil
}

// natsLogger sends the embedded server's log to slog.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
