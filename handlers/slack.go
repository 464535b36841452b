package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"

	"github.com/remediator/remediator"
)

// Replays remembers requests, so that a replayed one is refused.
type Replays interface {
	FirstSeen(ctx context.Context, key string) (bool, error)
}

// Answerer records approvals and rejections, with the same rules wherever they come from.
type Answerer interface {
	Answer(ctx context.Context, a remediator.Answer) (*remediator.Incident, error)
}

// ChatMembers says whether a chat user is a full member of the workspace: /remediator
// answers those, and not guests or users of another workspace in a shared channel.
type ChatMembers interface {
	Member(ctx context.Context, userID string) (remediator.ChatMember, error)
}

// Explainer says what an alert would lead to, touching nothing (/remediator simulate).
type Explainer interface {
	Explain(a remediator.Alert) (string, error)
}

// maxInteractionBytes is the largest Slack request accepted (a click, a command, an event).
// A button click is a few KiB; the body is read before its signature can be checked, so
// anyone may send one, and the limit is what an unauthenticated sender can make us read and
// hash.
const maxInteractionBytes = 64 << 10

// slackBudget is how long the checks and the enqueue of a Slack request may take: Slack gives
// up after three seconds, over HTTP and over the socket alike.
const slackBudget = 2 * time.Second

// slackInteraction takes a click on an Approve or Reject button. It verifies Slack's
// signature over the raw body and the timestamp before anything else, refuses a request it
// has seen already, and enqueues the answer; whether the user may answer is decided by the
// worker, which tells them if not. It answers at once, well within Slack's three seconds.
func (a *api) slackInteraction(c echo.Context) error {
	const source = "slack"
	ctx, cancel := context.WithTimeout(c.Request().Context(), slackBudget)
	defer cancel()
	form, key, err := a.verifySlack(ctx, c)
	if err == nil {
		var cb slack.InteractionCallback
		if err = json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
			err = remediator.Errorf(remediator.EINVALID, "payload is not an interaction: %v", err)
		} else {
			err = a.takeInteraction(ctx, cb, key)
		}
	}
	if err != nil {
		return a.refused(source, err)
	}
	a.webhooks.WithLabelValues(source, "accepted").Inc()
	return c.NoContent(http.StatusOK)
}

// slackCommand takes /remediator over HTTP, signed and checked as a click is, and answers
// it in the response, which Slack shows to the user who typed it.
func (a *api) slackCommand(c echo.Context) error {
	const source = "slack_command"
	ctx, cancel := context.WithTimeout(c.Request().Context(), slackBudget)
	defer cancel()
	form, _, err := a.verifySlack(ctx, c)
	if err != nil {
		return a.refused(source, err)
	}
	a.webhooks.WithLabelValues(source, "accepted").Inc()
	return c.JSON(http.StatusOK, a.command(ctx, slashCommand(form)))
}

// slackEvents takes the Events API over HTTP: Slack's URL check, and App Home openings.
func (a *api) slackEvents(c echo.Context) error {
	const source = "slack_event"
	ctx, cancel := context.WithTimeout(c.Request().Context(), slackBudget)
	defer cancel()
	body, err := a.verifiedSlackBody(ctx, c)
	if err != nil {
		return a.refused(source, err)
	}
	ev, err := slackevents.ParseEvent(body, slackevents.OptionNoVerifyToken())
	if err != nil {
		return a.refused(source, remediator.Errorf(remediator.EINVALID, "body is not a Slack event: %v", err))
	}
	a.webhooks.WithLabelValues(source, "accepted").Inc()
	if ev.Type == slackevents.URLVerification {
		var challenge slackevents.ChallengeResponse
		_ = json.Unmarshal(body, &challenge)
		return c.JSON(http.StatusOK, challenge)
	}
	if err := a.takeEvent(ctx, ev); err != nil {
		return a.refused(source, err)
	}
	return c.NoContent(http.StatusOK)
}

// verifySlack checks a Slack request's signature and freshness, refuses a replay, and
// returns its form and the key that names it.
func (a *api) verifySlack(ctx context.Context, c echo.Context) (url.Values, string, error) {
	body, err := a.verifiedSlackBody(ctx, c)
	if err != nil {
		return nil, "", err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, "", remediator.Errorf(remediator.EINVALID, "body is not a form: %v", err)
	}
	return form, replayKey(c.Request()), nil
}

// replayKey names a signed request by its signature as bytes, not as sent: hex decoding
// ignores case, so the same request with its signature's hex upper-cased passes the check
// too, and must not count as new. Having passed, the header is "v0=" and 64 hex digits, so
// lower-casing it is the hex of the decoded signature.
func replayKey(r *http.Request) string {
	return "slack:" + r.Header.Get("X-Slack-Request-Timestamp") + ":" + strings.ToLower(r.Header.Get("X-Slack-Signature"))
}

// verifiedSlackBody reads the body of a request that says it is from Slack, and returns it
// once its signature, its timestamp and its novelty are checked.
func (a *api) verifiedSlackBody(ctx context.Context, c echo.Context) ([]byte, error) {
	r := c.Request()
	body, err := readBody(c, maxInteractionBytes)
	if err != nil {
		return nil, err
	}
	sv, err := slack.NewSecretsVerifier(r.Header, a.SlackSigningSecret)
	switch {
	case errors.Is(err, slack.ErrExpiredTimestamp):
		return nil, remediator.Errorf(remediator.EUNAUTHORIZED, "request timestamp is more than five minutes off")
	case errors.Is(err, slack.ErrMissingHeaders):
		return nil, remediator.Errorf(remediator.EUNAUTHORIZED, "missing X-Slack-Signature or X-Slack-Request-Timestamp")
	case err != nil:
		return nil, remediator.Errorf(remediator.EUNAUTHORIZED, "malformed signature headers")
	}
	_, _ = sv.Write(body)
	if err := sv.Ensure(); err != nil {
		return nil, remediator.Errorf(remediator.EUNAUTHORIZED, "signature does not match the body")
	}
	if err := a.firstSeen(ctx, replayKey(r)); err != nil {
		return nil, err
	}
	return body, nil
}

// firstSeen refuses a request whose key was seen already.
func (a *api) firstSeen(ctx context.Context, key string) error {
	first, err := a.Replays.FirstSeen(ctx, key)
	switch {
	case err != nil:
		return remediator.Errorf(remediator.EUNAVAILABLE, "cannot tell a replay from a new request now: %v", err)
	case !first:
		return remediator.Errorf(remediator.ECONFLICT, "this request was handled already: a replay")
	}
	return nil
}

// takeInteraction enqueues the answers of a click on Approve or Reject, whose sender was
// checked (Slack's signature over HTTP, the socket's own token in Socket Mode). key names the
// request, so that the same click enqueued twice is one answer. ctx carries the request's
// budget (slackBudget), as do command's and takeEvent's.
func (a *api) takeInteraction(ctx context.Context, cb slack.InteractionCallback, key string) error {
	if cb.Type != slack.InteractionTypeBlockActions {
		return nil // nothing of ours
	}
	for _, action := range cb.ActionCallback.BlockActions {
		if action.ActionID != "approve" && action.ActionID != "reject" {
			continue
		}
		id, gate, attempt := remediator.ParseAnswerValue(action.Value)
		answer := remediator.Answer{Incident: id, Gate: gate, Attempt: attempt, By: cb.User.ID, Name: cb.User.Name, Via: remediator.ViaSlack,
			Approve: action.ActionID == "approve", Channel: cb.Channel.ID}
		if err := a.enqueueAnswer(ctx, answer, key+":"+action.ActionID); err != nil {
			return err
		}
	}
	return nil
}

// enqueueAnswer puts an answer given in Slack on the queue, for the worker to check and
// record under the same rules wherever it was given.
func (a *api) enqueueAnswer(ctx context.Context, answer remediator.Answer, msgID string) error {
	data, _ := json.Marshal(answer)
	if _, err := a.Publisher.Publish(ctx, a.AnswersSubject, data, msgID); err != nil {
		return remediator.Errorf(remediator.EUNAVAILABLE, "the queue cannot take the answer now: %v", err)
	}
	a.Log.Info("slack answer enqueued", "incident", answer.Incident, "user", answer.Who(), "approve", answer.Approve)
	return nil
}

// takeEvent asks for the App Home of the user who opened it to be drawn; other events are
// not ours.
func (a *api) takeEvent(ctx context.Context, ev slackevents.EventsAPIEvent) error {
	opened, ok := ev.InnerEvent.Data.(*slackevents.AppHomeOpenedEvent)
	if !ok || opened.Tab != "home" || opened.User == "" || a.NotifySubject == "" {
		return nil
	}
	// The Home tab shows what /remediator shows, to whom it shows it: not to guests.
	if err := a.mayCommand(ctx, opened.User); err != nil {
		a.Log.Warn("App Home not drawn", "user", opened.User, "err", err)
		return nil
	}
	data, _ := json.Marshal(remediator.Notice{Home: opened.User})
	// One drawing per user per ten seconds is enough, however often they open it.
	msgID := "home-" + opened.User + "-" + a.Now().UTC().Truncate(10*time.Second).Format("150405")
	if _, err := a.Publisher.Publish(ctx, a.NotifySubject, data, msgID); err != nil {
		return remediator.Errorf(remediator.EUNAVAILABLE, "the queue cannot take the App Home request now: %v", err)
	}
	return nil
}

// slashCommand reads a slash command's form, as Slack posts it.
func slashCommand(form url.Values) slack.SlashCommand {
	return slack.SlashCommand{
		TeamID: form.Get("team_id"), TeamDomain: form.Get("team_domain"), EnterpriseID: form.Get("enterprise_id"),
		ChannelID: form.Get("channel_id"), ChannelName: form.Get("channel_name"),
		UserID: form.Get("user_id"), UserName: form.Get("user_name"),
		Command: form.Get("command"), Text: form.Get("text"),
		ResponseURL: form.Get("response_url"), TriggerID: form.Get("trigger_id"), APIAppID: form.Get("api_app_id"),
	}
}
