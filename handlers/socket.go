package handlers

import (
	"context"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"

	"github.com/remediator/remediator"
)

// socketRetry is how long Socket Mode waits before connecting again after slack-go gave up
// (a token Slack refused): slack-go itself reconnects, with backoff, after anything else.
const socketRetry = time.Minute

// RunSocket takes Slack's clicks, /remediator commands and App Home events over Socket Mode
// until ctx ends: remediator opens the WebSocket to Slack itself, so Slack needs no way in.
// Each envelope is acknowledged at once, within Slack's three seconds, and handled as its
// HTTP twin is, without the signature: the socket was opened with the app-level token, which
// is what says it is Slack. Slack may deliver an envelope to any replica's socket, and again
// when an acknowledgement was late: the queue's deduplication by envelope makes it one.
func (s *Intake) RunSocket(ctx context.Context, client *socketmode.Client) {
	a := s.api
	go func() {
		for ctx.Err() == nil {
			err := client.RunContext(ctx)
			if ctx.Err() != nil {
				return
			}
			a.Log.Error("slack socket mode stopped; connecting again", "err", err, "in", socketRetry)
			select {
			case <-ctx.Done():
			case <-time.After(socketRetry):
			}
		}
	}()
	// A few envelopes at once, so that one slow to enqueue does not push the others' acks
	// past Slack's three seconds; RunSocket returns once they are all done.
	slots := make(chan struct{}, socketHandlers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-client.Events:
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				a.socketEvent(ctx, client, ev)
			}()
		}
	}
}

// socketHandlers is how many envelopes are handled at once.
const socketHandlers = 8

// socketEvent handles one event of the socket.
func (a *api) socketEvent(ctx context.Context, client *socketmode.Client, ev socketmode.Event) {
	switch ev.Type {
	case socketmode.EventTypeConnected:
		a.Log.Info("slack socket mode connected")
		return
	case socketmode.EventTypeConnectionError, socketmode.EventTypeInvalidAuth, socketmode.EventTypeErrorBadMessage:
		a.Log.Warn("slack socket mode", "event", ev.Type, "err", ev.Data)
		return
	}
	if ev.Request == nil || ev.Request.EnvelopeID == "" {
		return // the socket's own life: connecting, hello
	}
	source := "slack_socket"
	hctx, cancel := context.WithTimeout(ctx, slackBudget)
	defer cancel()
	var (
		payload any
		err     error
	)
	switch data := ev.Data.(type) {
	case slack.InteractionCallback:
		// The queue takes the same click once (its message ID), whichever envelope or
		// replica carries it: no replay check, which would drop Slack's retry of a click the
		// queue could not take.
		key := "slack-envelope:" + ev.Request.EnvelopeID
		if data.TriggerID != "" {
			key = "slack-trigger:" + data.TriggerID
		}
		err = a.takeInteraction(hctx, data, key)
	case slack.SlashCommand:
		payload = a.command(hctx, data)
	case slackevents.EventsAPIEvent:
		err = a.takeEvent(hctx, data)
	}
	outcome := "accepted"
	if err != nil {
		outcome = remediator.ErrorCode(err)
		a.Log.Warn("slack socket envelope refused", "type", ev.Type, "envelope", ev.Request.EnvelopeID, "err", err)
	}
	a.webhooks.WithLabelValues(source, outcome).Inc()
	// A refused envelope is acknowledged too: Slack would only send it again. One that the
	// queue could not take is not, so that Slack retries it, perhaps at another replica.
	if remediator.ErrorCode(err) == remediator.EUNAVAILABLE {
		return
	}
	// With a deadline: with the connection down, slack-go's queue of replies fills, and an
	// ack without one would wait for ever.
	actx, cancelAck := context.WithTimeout(ctx, time.Second)
	defer cancelAck()
	if err := client.AckCtx(actx, ev.Request.EnvelopeID, payload); err != nil {
		a.Log.Warn("cannot acknowledge a slack envelope", "envelope", ev.Request.EnvelopeID, "err", err)
	}
}
