package queue

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/remediator/remediator"
)

// Delivery is one delivery of a message to a handler.
type Delivery struct {
	Subject string
	Data    []byte
	// Attempt counts the deliveries of this message, from 1.
	Attempt int
	// Forged is why the message does not carry a valid signature of this service's key (it
	// was not published by remediator, or was changed since), or nil when it does. Only
	// signed messages may be acted on.
	Forged error
}

// Handler processes one delivery. Its error decides what happens to the message: nil acks
// it; a *remediator.Later naks it to come back when it says; a retriable error
// (remediator.Retriable) naks it to come back after the backoff for its attempt; any other
// error terminates it with the error as reason. The queue never gives up a
// retriable message: a handler that has a budget of attempts keeps it itself and returns a
// permanent error when it is spent.
type Handler func(ctx context.Context, d Delivery) error

// Consume delivers c's messages to h on up to workers goroutines until ctx ends. A message
// that does not carry this service's signature is never given to h: it goes to forged, if
// not nil, to be recorded where the humans see it, and is then given up. Then it
// fetches nothing more, gives running handlers up to grace to finish, cancels the rest (whose
// messages are naked, to be redelivered) and returns. While a handler runs, the message's ack
// deadline is extended, so long remediations are not redelivered to another worker.
func (q *Queue) Consume(ctx context.Context, c Consumer, workers int, grace time.Duration, h, forged Handler) error {
	cons, err := q.js.Consumer(ctx, c.stream, c.name)
	if err != nil {
		return unavailable("consumer %s", c.name, err)
	}
	log := q.opts.Log.With("consumer", c.name)
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	slots := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		fetchCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msg, err := cons.Next(jetstream.FetchContext(fetchCtx))
		cancel()
		if err != nil {
			<-slots
			idle := errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
			if !idle && ctx.Err() == nil {
				log.Warn("fetch failed", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			q.handle(workCtx, log, msg, h, forged)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		log.Warn("handlers still running after the shutdown grace period; cancelling them", "grace", grace)
		cancelWork()
		<-done
	}
	return nil
}

func (q *Queue) handle(ctx context.Context, log *slog.Logger, msg jetstream.Msg, h, forged Handler) {
	d := Delivery{Subject: msg.Subject(), Data: msg.Data(), Attempt: 1}
	d.Forged = verify(msg.Headers(), msg.Subject(), msg.Data(), q.trusted)
	if md, err := msg.Metadata(); err == nil {
		d.Attempt = int(md.NumDelivered)
		log = log.With("stream_seq", md.Sequence.Stream, "attempt", d.Attempt)
		// A message stored before this queue first signed anything (the version before
		// signatures) is the service's own: the server stamped when it stored it.
		if d.Forged != nil && msg.Headers().Get(headerSignature) == "" && md.Timestamp.Before(q.signedSince) {
			log.Info("taking an unsigned message stored before messages were signed", "stored_at", md.Timestamp)
			d.Forged = nil
		}
	}
	if d.Forged != nil {
		h = refuseForged(forged)
	}
	hctx, cancel := context.WithCancel(ctx)
	stop := q.keepAlive(msg, log, cancel)
	err := h(hctx, d)
	stop()
	interrupted := hctx.Err() != nil
	cancel()

	var (
		ackErr error
		later  *remediator.Later
	)
	switch {
	case err == nil:
		ackErr = msg.Ack()
	case interrupted:
		log.Info("handler interrupted; the message goes back to the queue", "err", err)
		ackErr = msg.Nak()
	case errors.As(err, &later):
		log.Debug("nak: not yet", "retry_in", later.After, "reason", later.Reason)
		ackErr = msg.NakWithDelay(later.After)
	case remediator.Retriable(err):
		delay := q.opts.Backoff[min(d.Attempt, len(q.opts.Backoff))-1]
		log.Debug("nak: the message comes back after the backoff", "retry_in", delay, "err", err)
		ackErr = msg.NakWithDelay(delay)
	default:
		log.Warn("term: the message is given up", "err", err)
		ackErr = msg.TermWithReason(truncate(err.Error(), 1024))
	}
	if ackErr != nil {
		log.Warn("acknowledging the message failed; it will be redelivered", "err", ackErr)
	}
}

// keepAlive tells the server the message is still being worked on, at a third of the ack
// wait, until the returned function is called. If the server has not heard so for a whole ack
// wait, it may already have given the message to another worker: lost is called, so that
// this worker stops rather than work beside the other.
func (q *Queue) keepAlive(msg jetstream.Msg, log *slog.Logger, lost func()) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(q.opts.AckWait / 3)
		defer t.Stop()
		heard := time.Now()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					log.Warn("cannot extend the ack deadline", "err", err)
				} else {
					heard = time.Now()
				}
				if time.Since(heard) >= q.opts.AckWait {
					log.Error("the ack deadline passed without an extension; stopping the handler, as the message may be redelivered")
					lost()
					return
				}
			}
		}
	}()
	return func() { close(done) }
}

// refuseForged records a message that is not signed by this service, if forged can, and
// gives it up; retrying does not make a signature.
func refuseForged(forged Handler) Handler {
	return func(ctx context.Context, d Delivery) error {
		if forged != nil {
			if err := forged(ctx, d); err != nil {
				return err
			}
		}
		return remediator.Errorf(remediator.EFORBIDDEN, "refused a message on %s that this service did not sign: %v", d.Subject, d.Forged)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
