package queue

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
// error terminates it with the error as reason. A retriable message is given up only after
// Options.MaxDeliver deliveries, and then recorded as a dead letter; a handler that has a
// budget of attempts keeps it itself and returns a permanent error when it is spent. A Later
// does not count: the message is parked with the waits and comes back as a new one.
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
			q.handle(workCtx, log, c, msg, h, forged)
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

// BatchHandler processes several deliveries at once; its error applies to each of them.
type BatchHandler func(ctx context.Context, ds []Delivery) error

// ConsumeBatches delivers c's messages to h in batches of up to size (as many as have
// arrived), one batch at a time, until ctx ends: many messages about one thing cost one pass.
// A batch that fails is handled again message by message, so that a message that can never
// succeed fails (and is given up) alone. Messages not signed by this service go to forged one
// by one, as with Consume.
func (q *Queue) ConsumeBatches(ctx context.Context, c Consumer, size int, grace time.Duration, h BatchHandler, forged Handler) error {
	cons, err := q.js.Consumer(ctx, c.stream, c.name)
	if err != nil {
		return unavailable("consumer %s", c.name, err)
	}
	log := q.opts.Log.With("consumer", c.name)
	single := func(ctx context.Context, d Delivery) error { return h(ctx, []Delivery{d}) }
	for ctx.Err() == nil {
		fetchCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		first, err := cons.Next(jetstream.FetchContext(fetchCtx))
		cancel()
		if err != nil {
			idle := errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
			if !idle && ctx.Err() == nil {
				log.Warn("fetch failed", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		msgs := []jetstream.Msg{first}
		if size > 1 {
			if more, err := cons.FetchNoWait(size - 1); err == nil {
				for m := range more.Messages() {
					msgs = append(msgs, m)
				}
			}
		}
		q.handleBatch(ctx, grace, log, c, msgs, h, single, forged)
	}
	return nil
}

// handleBatch runs one batch; the signed messages together, each other one alone.
func (q *Queue) handleBatch(ctx context.Context, grace time.Duration, log *slog.Logger, c Consumer, msgs []jetstream.Msg, h BatchHandler, single, forged Handler) {
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(grace, cancelWork)
		context.AfterFunc(workCtx, func() { t.Stop() })
	})
	defer stopGrace()
	var (
		good []jetstream.Msg
		ds   []Delivery
	)
	for _, m := range msgs {
		d := q.delivery(log, m)
		if d.Forged != nil || len(msgs) == 1 {
			q.handle(workCtx, log, c, m, single, forged)
			continue
		}
		good, ds = append(good, m), append(ds, d)
	}
	if len(good) == 0 {
		return
	}
	hctx, cancel := context.WithCancel(workCtx)
	var stops []func()
	for _, m := range good {
		stops = append(stops, q.keepAlive(m, log, cancel))
	}
	err := h(hctx, ds)
	for _, stop := range stops {
		stop()
	}
	interrupted := hctx.Err() != nil
	cancel()
	switch {
	case err == nil:
		for _, m := range good {
			if err := m.Ack(); err != nil {
				log.Warn("cannot tell the queue the work is done; it will be handed out again, and the incident's record keeps it from running twice", "err", err)
			}
		}
	case interrupted:
		for _, m := range good {
			_ = m.Nak()
		}
	default:
		log.Info("a batch failed; handling its messages one by one", "messages", len(good), "err", err)
		for _, m := range good {
			q.handle(workCtx, log, c, m, single, forged)
		}
	}
}

func (q *Queue) handle(ctx context.Context, log *slog.Logger, c Consumer, msg jetstream.Msg, h, forged Handler) {
	d := q.delivery(log, msg)
	if md, err := msg.Metadata(); err == nil {
		log = log.With("stream_seq", md.Sequence.Stream, "attempt", d.Attempt)
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
	case errors.As(err, &later) && c != waiter:
		ackErr = q.park(ctx, log, msg, later)
	case errors.As(err, &later):
		ackErr = msg.NakWithDelay(later.After)
	case remediator.Retriable(err) && d.Attempt >= q.opts.MaxDeliver:
		q.deadLetter(ctx, log, c, msg, d, err)
		ackErr = msg.TermWithReason(truncate(err.Error(), 1024))
	case remediator.Retriable(err):
		delay := q.RetryDelay(d.Attempt)
		log.Debug("the message comes back after the backoff", "retry_in", delay, "err", err)
		ackErr = msg.NakWithDelay(delay)
	default:
		log.Warn("the message is given up: retrying cannot help", "err", err)
		ackErr = msg.TermWithReason(truncate(err.Error(), 1024))
	}
	if ackErr != nil {
		log.Warn("cannot tell the queue the work is done; it will be handed out again, and the incident's record keeps it from running twice", "err", ackErr)
	}
}

// RetryDelay is how long a message (or a step) that failed in a way that may pass waits after
// its attempt-th try. The first retry waits the shortest, even on a redelivery: a message taken
// over from a worker that died comes with an attempt already counted, and its first error is
// often the NATS election that followed the death, over in a second or two.
func (q *Queue) RetryDelay(attempt int) time.Duration {
	return q.opts.Backoff[min(max(attempt-1, 1), len(q.opts.Backoff))-1]
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
					log.Warn("cannot tell the queue the work goes on; if this lasts, another worker may take it over", "err", err)
				} else {
					heard = time.Now()
				}
				if time.Since(heard) >= q.opts.AckWait {
					log.Error("the queue has not heard from this worker for too long and may hand the work to another: stopping it here, so that it does not run twice")
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

// delivery is a message as a handler gets it, its signature checked.
func (q *Queue) delivery(log *slog.Logger, msg jetstream.Msg) Delivery {
	d := Delivery{Subject: msg.Subject(), Data: msg.Data(), Attempt: 1}
	d.Forged = verify(msg.Headers(), msg.Subject(), msg.Data(), q.trusted)
	if md, err := msg.Metadata(); err == nil {
		d.Attempt = int(md.NumDelivered)
		// A message stored before this queue first signed anything (the version before
		// signatures) is the service's own: the server stamped when it stored it.
		if d.Forged != nil && msg.Headers().Get(headerSignature) == "" && md.Timestamp.Before(q.signedSince) {
			log.Info("taking an unsigned message stored before messages were signed", "stored_at", md.Timestamp, "stream_seq", md.Sequence.Stream)
			d.Forged = nil
		}
	}
	return d
}

// wait is a message parked until a time, and where it goes back then.
type wait struct {
	Subject string    `json:"subject"`
	Data    []byte    `json:"data"`
	Due     time.Time `json:"due"`
	Reason  string    `json:"reason"`
}

// park moves a message that must wait (for a lock, a window, a deadline) to the waits stream
// and acknowledges it: a wait does not occupy its consumer, whose other messages (answers,
// new runs) go on. If it cannot be parked, it waits where it is.
func (q *Queue) park(ctx context.Context, log *slog.Logger, msg jetstream.Msg, later *remediator.Later) error {
	w := wait{Subject: msg.Subject(), Data: msg.Data(), Due: time.Now().Add(later.After), Reason: later.Reason}
	data, err := json.Marshal(w)
	if err == nil {
		id := "wait-" + msg.Subject()
		if md, mdErr := msg.Metadata(); mdErr == nil {
			id = fmt.Sprintf("wait-%s-%d-%d", md.Stream, md.Sequence.Stream, md.NumDelivered)
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultTimeout)
		_, err = q.Publish(pctx, subjectWaits+"."+msg.Subject(), data, id)
		cancel()
	}
	if err != nil {
		log.Warn("cannot park the message with the waits; it waits in its consumer", "retry_in", later.After, "err", err)
		return msg.NakWithDelay(later.After)
	}
	log.Debug("parked until its time", "retry_in", later.After, "reason", later.Reason)
	return msg.Ack()
}

// wake gives a parked message back to its subject once it is due.
func (q *Queue) wake(ctx context.Context, d Delivery) error {
	var w wait
	if err := json.Unmarshal(d.Data, &w); err != nil || w.Subject == "" {
		return remediator.Errorf(remediator.EINVALID, "a parked message that names no subject: %v", err)
	}
	if left := time.Until(w.Due); left > 0 {
		return remediator.RetryLater(min(left, time.Hour), "%s", w.Reason)
	}
	_, err := q.Publish(ctx, w.Subject, w.Data, fmt.Sprintf("wake-%x", sha256.Sum256(d.Data)))
	return err
}

// RunWaits gives parked messages back to their consumers when they are due, until ctx ends.
func (q *Queue) RunWaits(ctx context.Context, grace time.Duration) error {
	return q.Consume(ctx, waiter, 4, grace, q.wake, nil)
}

// deadLetter records a message given up after its deliveries where the humans can look at
// it, counts it and logs it.
func (q *Queue) deadLetter(ctx context.Context, log *slog.Logger, c Consumer, msg jetstream.Msg, d Delivery, cause error) {
	q.deadLetters.WithLabelValues(c.name).Inc()
	seq := uint64(0)
	if md, err := msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	log.Error("a message was given up after its deliveries and recorded as a dead letter", "subject", d.Subject,
		"deliveries", d.Attempt, "bucket", bucketDead, "key", fmt.Sprintf("%s.%d", c.name, seq), "err", cause)
	data, _ := json.Marshal(DeadLetter{Consumer: c.name, Subject: d.Subject, StreamSeq: seq, Deliveries: d.Attempt,
		Error: truncate(cause.Error(), 4096), At: time.Now().UTC(), Data: d.Data[:min(len(d.Data), 64<<10)]})
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultTimeout)
	defer cancel()
	if _, err := q.dead.Put(rctx, fmt.Sprintf("%s.%d", c.name, seq), data); err != nil {
		log.Error("cannot record the dead letter", "err", err)
	}
}

// DeadLetter is a message given up after MaxDeliver deliveries, as the dead bucket keeps it.
type DeadLetter struct {
	Consumer   string    `json:"consumer"`
	Subject    string    `json:"subject"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries int       `json:"deliveries"`
	Error      string    `json:"error"`
	At         time.Time `json:"at"`
	// Data is the message, or its first 64 KiB.
	Data []byte `json:"data"`
}

// DeadLetters returns the dead letters recorded, oldest first.
func (q *Queue) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	keys, err := q.dead.ListKeys(ctx)
	if err != nil {
		return nil, unavailable("list %s", bucketDead, err)
	}
	defer keys.Stop()
	var out []DeadLetter
	for k := range keys.Keys() {
		e, err := q.dead.Get(ctx, k)
		if err != nil {
			continue // expired while listed
		}
		var dl DeadLetter
		if json.Unmarshal(e.Value(), &dl) == nil {
			out = append(out, dl)
		}
	}
	slices.SortFunc(out, func(a, b DeadLetter) int { return a.At.Compare(b.At) })
	return out, nil
}
