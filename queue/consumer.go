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
	// Final is set on the last delivery: a failure now is not retried.
	Final bool
}

// Handler processes one delivery. Its error decides what happens to the message: nil acks
// it; a retriable error (remediator.Retriable) naks it to come back after the backoff for its
// attempt, unless the delivery is final; any other error terminates it with the error as
// reason. A handler that records its own outcome must do so before it returns.
type Handler func(ctx context.Context, d Delivery) error

// Consume delivers c's messages to h on up to workers goroutines until ctx ends. Then it
// fetches nothing more, gives running handlers up to grace to finish, cancels the rest (whose
// messages are naked, to be redelivered) and returns. While a handler runs, the message's ack
// deadline is extended, so long remediations are not redelivered to another worker.
func (q *Queue) Consume(ctx context.Context, c Consumer, workers int, grace time.Duration, h Handler) error {
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
			q.handle(workCtx, log, msg, h)
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

func (q *Queue) handle(ctx context.Context, log *slog.Logger, msg jetstream.Msg, h Handler) {
	d := Delivery{Subject: msg.Subject(), Data: msg.Data(), Attempt: 1}
	maxDeliver := len(q.opts.Backoff) + 1
	if md, err := msg.Metadata(); err == nil {
		d.Attempt = int(md.NumDelivered)
		log = log.With("stream_seq", md.Sequence.Stream)
	}
	d.Final = d.Attempt >= maxDeliver

	stop := q.keepAlive(msg)
	err := h(ctx, d)
	stop()

	var ackErr error
	switch {
	case err == nil:
		ackErr = msg.Ack()
	case ctx.Err() != nil:
		log.Info("handler interrupted by shutdown; the message goes back to the queue", "err", err)
		ackErr = msg.Nak()
	case remediator.Retriable(err) && !d.Final:
		delay := q.opts.Backoff[min(d.Attempt, len(q.opts.Backoff))-1]
		log.Warn("handler failed; will retry", "attempt", d.Attempt, "retry_in", delay, "err", err)
		ackErr = msg.NakWithDelay(delay)
	default:
		log.Error("handler failed; giving the message up", "attempt", d.Attempt, "err", err)
		ackErr = msg.TermWithReason(truncate(err.Error(), 1024))
	}
	if ackErr != nil {
		log.Warn("acknowledging the message failed; it will be redelivered", "err", ackErr)
	}
}

// keepAlive tells the server the message is still being worked on, at a third of the ack
// wait, until the returned function is called.
func (q *Queue) keepAlive(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(q.opts.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done) }
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
