// Package slack reports incidents in a Slack channel: one message per incident, kept up to
// date with chat.update, each step's result and every approval, refusal and state change in
// its thread, and Approve and Reject buttons while the incident waits for approval. It also
// resolves the user groups that approval rules name, and says whether a user who clicked is a
// full member of the workspace.
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
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

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
	// Open lists the incidents not over yet, and MayAnswer says whether a user may answer an
	// incident's approval request: the App Home shows both. Without Open, no App Home.
	Open      func(ctx context.Context) ([]*remediator.Incident, error)
	MayAnswer func(ctx context.Context, inc *remediator.Incident, userID string) bool
	Log       *slog.Logger
}

// Notifier reports incidents in Slack.
type Notifier struct {
	cfg Config
	api *slack.Client

	// authMu is held while auth.test is asked, so that it is asked once.
	authMu sync.Mutex
	bot    *slack.AuthTestResponse
}

// New returns a notifier.
func New(cfg Config) *Notifier {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{cfg: cfg, api: cfg.client()}
}

// client is a Slack Web API client with the bot token, and the options given.
func (cfg Config) client(opts ...slack.Option) *slack.Client {
	url := cfg.APIURL
	if !strings.HasSuffix(url, "/") {
		url += "/"
	}
	opts = append([]slack.Option{slack.OptionAPIURL(url), slack.OptionHTTPClient(&http.Client{Timeout: 10 * time.Second})}, opts...)
	return slack.New(cfg.Token, opts...)
}

// SocketMode returns a Socket Mode client of the same app, which opens its connection with
// the app-level token (xapp-...).
func (n *Notifier) SocketMode(appToken string) *socketmode.Client {
	return socketmode.New(n.cfg.client(slack.OptionAppLevelToken(appToken)))
}

// Handle brings the incident of one notice up to date in Slack: it posts or updates the
// incident's message, posts what its thread lacks, and shows an ephemeral message if the
// notice carries one. It is safe to run again on the same notice.
func (n *Notifier) Handle(ctx context.Context, data []byte) error {
	var notice remediator.Notice
	if err := json.Unmarshal(data, &notice); err != nil || (notice.Incident == "" && notice.Home == "") {
		return remediator.Errorf(remediator.EINVALID, "notice %q: not an incident reference", data)
	}
	if notice.Home != "" {
		return n.publishHome(ctx, notice.Home)
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
		if _, err := n.api.PostEphemeralContext(ctx, e.Channel, e.User, slack.MsgOptionText(escape(e.Text), false)); err != nil {
			return classify(err, "chat.postEphemeral to %s", e.User)
		}
	}
	return nil
}

// claimFor is how long a notifier's claim to post a message stands before another may take
// it over (the first may have died between the claim and the post).
const claimFor = time.Minute

// syncMessage posts the incident's message, or updates it to the incident's state. Posting
// is claimed first, by compare-and-set on the incident, so that notifiers on two replicas do
// not both post it.
func (n *Notifier) syncMessage(ctx context.Context, inc *remediator.Incident) (*remediator.Incident, error) {
	opts := []slack.MsgOption{slack.MsgOptionBlocks(render(inc, n.reportURL(inc))...), slack.MsgOptionText(escape(summary(inc)), false)}
	gone := ""
	if inc.Chat != nil && inc.Chat.ID != "" {
		_, _, _, err := n.api.UpdateMessageContext(ctx, inc.Chat.Channel, inc.Chat.ID, opts...)
		if !slackError(err, "message_not_found") {
			if err != nil {
				return nil, classify(err, "chat.update of incident %s", inc.ID)
			}
			return inc, nil
		}
		n.cfg.Log.Warn("the incident's Slack message was deleted; posting it again", "incident", inc.ID)
		gone = inc.Chat.ID
	}
	now := time.Now()
	claimed := false
	inc, err := n.cfg.Incidents.Update(ctx, inc.ID, func(inc *remediator.Incident) error {
		c := inc.Chat
		if claimed = c == nil || (c.ID == "" && now.Sub(c.ClaimedAt) > claimFor) || (gone != "" && c.ID == gone); claimed {
			inc.Chat = &remediator.ChatMessage{ClaimedAt: now}
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case !claimed && inc.Chat.ID != "":
		return inc, nil // posted by another notifier meanwhile
	case !claimed:
		return nil, remediator.RetryLater(5*time.Second, "another notifier is posting the message of incident %s", inc.ID)
	}
	channel, ts, err := n.api.PostMessageContext(ctx, n.cfg.Channel, opts...)
	if err != nil {
		if _, uerr := n.cfg.Incidents.Update(ctx, inc.ID, func(inc *remediator.Incident) error {
			if inc.Chat != nil && inc.Chat.ClaimedAt.Equal(now) {
				inc.Chat = nil
			}
			return nil
		}); uerr != nil {
			n.cfg.Log.Warn("cannot release the claim to post; it lapses by itself", "incident", inc.ID, "err", uerr)
		}
		return nil, classify(err, "chat.postMessage of incident %s", inc.ID)
	}
	return n.cfg.Incidents.Update(ctx, inc.ID, func(inc *remediator.Incident) error {
		inc.Chat = &remediator.ChatMessage{Channel: channel, ID: ts}
		return nil
	})
}

// syncThread posts, in the message's thread, every timeline event worth a reply that is not
// there yet. Each reply is claimed in the incident before it is posted, so that two notifiers
// do not both post it; a reply that fails to post is released for the next attempt.
func (n *Notifier) syncThread(ctx context.Context, inc *remediator.Incident) error {
	for i, e := range inc.Timeline {
		key := fmt.Sprintf("t%d", i)
		text := threadText(inc, e, n.reportURL(inc))
		if text == "" || slices.Contains(inc.Chat.Posted, key) {
			continue
		}
		claimed := false
		var err error
		inc, err = n.cfg.Incidents.Update(ctx, inc.ID, func(inc *remediator.Incident) error {
			if claimed = inc.Chat != nil && !slices.Contains(inc.Chat.Posted, key); claimed {
				inc.Chat.Posted = append(inc.Chat.Posted, key)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !claimed {
			continue
		}
		if _, _, err := n.api.PostMessageContext(ctx, inc.Chat.Channel, slack.MsgOptionTS(inc.Chat.ID), slack.MsgOptionText(text, false)); err != nil {
			if _, uerr := n.cfg.Incidents.Update(ctx, inc.ID, func(inc *remediator.Incident) error {
				if inc.Chat != nil {
					inc.Chat.Posted = slices.DeleteFunc(inc.Chat.Posted, func(k string) bool { return k == key })
				}
				return nil
			}); uerr != nil {
				n.cfg.Log.Warn("cannot release a thread reply's claim; it will not be posted", "incident", inc.ID, "reply", key, "err", uerr)
			}
			return classify(err, "thread reply of incident %s", inc.ID)
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

// Member says whether a user is a full member of the bot's workspace, or a guest, a user of
// another organization (Slack Connect), a bot or deactivated (users.info, and auth.test once
// for the bot's own team). It asks Slack at every click: clicks are few, and a user made a
// guest or deactivated there loses the right to approve at once.
func (n *Notifier) Member(ctx context.Context, userID string) (remediator.ChatMember, error) {
	bot, err := n.botTeam(ctx)
	if err != nil {
		return remediator.ChatMember{}, err
	}
	u, err := n.api.GetUserInfoContext(ctx, userID)
	if err != nil {
		return remediator.ChatMember{}, classify(err, "users.info of %s", userID)
	}
	return member(userID, u, bot), nil
}

// member says what u is to the bot's workspace, as auth.test described it.
//
// A user of another workspace is external, unless both workspaces belong to the same
// Enterprise Grid organization: such a user is the organization's own, under its single
// sign-on and its admins, and may be in the channel through an org-shared channel; a guest of
// the organization still shows as restricted, and a user of another organization has another
// enterprise ID (or none) and is a stranger. An empty enterprise ID matches nothing.
func member(userID string, u *slack.User, bot *slack.AuthTestResponse) remediator.ChatMember {
	sameOrg := bot.EnterpriseID != "" && u.Enterprise.EnterpriseID == bot.EnterpriseID
	return remediator.ChatMember{
		ID:       userID,
		Guest:    u.IsRestricted || u.IsUltraRestricted,
		External: u.IsStranger || (u.TeamID != bot.TeamID && !sameOrg),
		Bot:      u.IsBot || u.IsAppUser,
		Deleted:  u.Deleted,
	}
}

// botTeam returns what auth.test says of the bot's token: its team, and its Enterprise Grid
// organization if any. It is asked once; a failure is asked again next time.
func (n *Notifier) botTeam(ctx context.Context) (*slack.AuthTestResponse, error) {
	n.authMu.Lock()
	defer n.authMu.Unlock()
	if n.bot != nil {
		return n.bot, nil
	}
	resp, err := n.api.AuthTestContext(ctx)
	if err != nil {
		return nil, classify(err, "auth.test")
	}
	if resp.TeamID == "" {
		return nil, remediator.Errorf(remediator.EINVALID, "slack: auth.test: no team_id for the bot's token")
	}
	n.bot = resp
	return resp, nil
}

// reportURL is the incident's report page, ready for mrkdwn: the incident ID is escaped for
// the path and for Slack, so that it can neither leave the path nor end the link it is in.
func (n *Notifier) reportURL(inc *remediator.Incident) string {
	return n.cfg.BaseURL + escape(remediator.ReportPath(inc.ID))
}

// slackError says whether err is Slack's refusal with the given error code.
func slackError(err error, code string) bool {
	var refused slack.SlackErrorResponse
	return errors.As(err, &refused) && refused.Err == code
}

// classify says whether a Slack error may pass: rate limits (after the wait Slack asks
// for), server errors and the network may; a refusal of the request (a bad token, an unknown
// channel) will not.
func classify(err error, format string, args ...any) error {
	var limited *slack.RateLimitedError
	if errors.As(err, &limited) {
		return remediator.RetryLater(limited.RetryAfter, "slack: "+format+": rate limited", args...)
	}
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
