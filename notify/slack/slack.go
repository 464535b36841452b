// Package slack reports incidents in a Slack channel: one message per incident, kept up to
// date with chat.update, each step's result and every approval, refusal and state change in
// its thread, and Approve and Reject buttons while the incident waits for approval. It also
// resolves the user groups that approval rules name.
//
// It runs from the notify queue, never inside a remediation: Slack being down or slow delays
// the messages, which are retried with backoff, and nothing else.
package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/remediator/remediator"
)

// Incidents reads incidents and records where they are reported.
type Incidents interface {
	Get(ctx context.Context, id string) (*remediator.Incident, error)
	Update(ctx context.Context, id string, fn func(*remediator.Incident) error) (*remediator.Incident, error)
}

// Config is what the notifier needs.
type Config struct {
	Token   string
	Channel string
	// APIURL is Slack's Web API, or a test server.
	APIURL string
	// BaseURL is where humans reach remediator, for report links.
	BaseURL   string
	Incidents Incidents
	Log       *slog.Logger
}

// Notifier reports incidents in Slack.
type Notifier struct {
	cfg Config
	api *slack.Client
}

// New returns a notifier.
func New(cfg Config) *Notifier {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	url := cfg.APIURL
	if !strings.HasSuffix(url, "/") {
		url += "/"
	}
	api := slack.New(cfg.Token, slack.OptionAPIURL(url), slack.OptionHTTPClient(&http.Client{Timeout: 10 * time.Second}))
	return &Notifier{cfg: cfg, api: api}
}

// Handle brings the incident of one notice up to date in Slack: it posts or updates the
// incident's message, posts what its thread lacks, and shows an ephemeral message if the
// notice carries one. It is safe to run again on the same notice.
func (n *Notifier) Handle(ctx context.Context, data []byte) error {
	var notice remediator.Notice
	if err := json.Unmarshal(data, &notice); err != nil || notice.Incident == "" {
		return remediator.Errorf(remediator.EINVALID, "notice %q: not an incident reference", data)
	}
	inc, err := n.cfg.Incidents.Get(ctx, notice.Incident)
	if err != nil {
		return err
	}
	if inc, err = n.syncMessage(ctx, inc); err != nil {
		return err
	}
	if err := n.syncThread(ctx, inc); err != nil {
		return err
	}
	if e := notice.Ephemeral; e != nil {
		if _, err := n.api.PostEphemeralContext(ctx, e.Channel, e.User, slack.MsgOptionText(e.Text, false)); err != nil {
			return classify(err, "chat.postEphemeral to %s", e.User)
		}
	}
	return nil
}

// syncMessage posts the incident's message, or updates it to the incident's state.
func (n *Notifier) syncMessage(ctx context.Context, inc *remediator.Incident) (*remediator.Incident, error) {
	opts := []slack.MsgOption{slack.MsgOptionBlocks(render(inc, n.reportURL(inc))...), slack.MsgOptionText(summary(inc), false)}
	if inc.Chat != nil {
		if _, _, _, err := n.api.UpdateMessageContext(ctx, inc.Chat.Channel, inc.Chat.ID, opts...); err != nil {
			return nil, classify(err, "chat.update of incident %s", inc.ID)
		}
		return inc, nil
	}
	channel, ts, err := n.api.PostMessageContext(ctx, n.cfg.Channel, opts...)
	if err != nil {
		return nil, classify(err, "chat.postMessage of incident %s", inc.ID)
	}
	return n.cfg.Incidents.Update(ctx, inc.ID, func(inc *remediator.Incident) error {
		if inc.Chat == nil {
			inc.Chat = &remediator.ChatMessage{Channel: channel, ID: ts}
		}
		return nil
	})
}

// syncThread posts, in the message's thread, every timeline event worth a reply that is not
// there yet, and records each as posted as soon as it is.
func (n *Notifier) syncThread(ctx context.Context, inc *remediator.Incident) error {
	for i, e := range inc.Timeline {
		key := fmt.Sprintf("t%d", i)
		text := threadText(inc, e, n.reportURL(inc))
		if text == "" || slices.Contains(inc.Chat.Posted, key) {
			continue
		}
		if _, _, err := n.api.PostMessageContext(ctx, inc.Chat.Channel, slack.MsgOptionTS(inc.Chat.ID), slack.MsgOptionText(text, false)); err != nil {
			return classify(err, "thread reply of incident %s", inc.ID)
		}
		var err error
		inc, err = n.cfg.Incidents.Update(ctx, inc.ID, func(inc *remediator.Incident) error {
			if inc.Chat != nil && !slices.Contains(inc.Chat.Posted, key) {
				inc.Chat.Posted = append(inc.Chat.Posted, key)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Members returns the user IDs of a user group (usergroups.users.list).
func (n *Notifier) Members(ctx context.Context, group string) ([]string, error) {
	users, err := n.api.GetUserGroupMembersContext(ctx, group)
	if err != nil {
		return nil, classify(err, "usergroups.users.list of %s", group)
	}
	return users, nil
}

func (n *Notifier) reportURL(inc *remediator.Incident) string {
	return n.cfg.BaseURL + "/api/v1/incidents/" + inc.ID + "/report"
}

// classify says whether a Slack error may pass: rate limits, server errors and the network
// may; a refusal of the request (a bad token, an unknown channel) will not.
func classify(err error, format string, args ...any) error {
	args = append(args, err)
	format = "slack: " + format + ": %w"
	var refused slack.SlackErrorResponse
	if errors.As(err, &refused) {
		switch refused.Err {
		case "ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout":
		default:
			return remediator.Errorf(remediator.EINVALID, format, args...)
		}
	}
	var status slack.StatusCodeError
	if errors.As(err, &status) && !status.Retryable() {
		return remediator.Errorf(remediator.EINVALID, format, args...)
	}
	return remediator.Errorf(remediator.EUNAVAILABLE, format, args...)
}
