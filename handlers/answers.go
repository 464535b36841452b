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

// maxInteractionBytes is the largest Slack interaction payload accepted. A button click is a
// few KiB; the body is read before its signature can be checked, so anyone may send one, and
// the limit is what an unauthenticated sender can make us read and hash.
const maxInteractionBytes = 64 << 10

// slackInteraction takes a click on an Approve or Reject button. It verifies Slack's
// signature over the raw body and the timestamp before anything else, refuses a request it
// has seen already, and enqueues the answer; whether the user may answer is decided by the
// worker, which tells them if not. It answers at once, well within Slack's three seconds.
func (a *api) slackInteraction(c echo.Context) error {
	const source = "slack"
	if err := a.receiveInteraction(c); err != nil {
		return a.refused(source, err)
	}
	a.webhooks.WithLabelValues(source, "accepted").Inc()
	return c.NoContent(http.StatusOK)
}

func (a *api) receiveInteraction(c echo.Context) error {
	r := c.Request()
	body, err := readBody(c, maxInteractionBytes)
	if err != nil {
		return err
	}
	// Slack gives up after three seconds: the checks and the enqueue must fit well within.
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	sv, err := slack.NewSecretsVerifier(r.Header, a.SlackSigningSecret)
	switch {
	case errors.Is(err, slack.ErrExpiredTimestamp):
		return remediator.Errorf(remediator.EUNAUTHORIZED, "request timestamp is more than five minutes off")
	case errors.Is(err, slack.ErrMissingHeaders):
		return remediator.Errorf(remediator.EUNAUTHORIZED, "missing X-Slack-Signature or X-Slack-Request-Timestamp")
	case err != nil:
		return remediator.Errorf(remediator.EUNAUTHORIZED, "malformed signature headers")
	}
	_, _ = sv.Write(body)
	if err := sv.Ensure(); err != nil {
		return remediator.Errorf(remediator.EUNAUTHORIZED, "signature does not match the body")
	}
	// The replay key is the signature as bytes, not as sent: hex decoding ignores case, so
	// the same request with its signature's hex upper-cased passes the check too, and must not
	// count as new. Having passed, the header is "v0=" and 64 hex digits, so lower-casing it
	// is the hex of the decoded signature.
	key := "slack:" + r.Header.Get("X-Slack-Request-Timestamp") + ":" + strings.ToLower(r.Header.Get("X-Slack-Signature"))
	first, err := a.Replays.FirstSeen(ctx, key)
	if err != nil {
		return err
	}
	if !first {
		return remediator.Errorf(remediator.ECONFLICT, "this request was handled already: a replay")
	}

	form, err := url.ParseQuery(string(body))
	if err != nil {
		return remediator.Errorf(remediator.EINVALID, "body is not a form: %v", err)
	}
	var cb slack.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
		return remediator.Errorf(remediator.EINVALID, "payload is not an interaction: %v", err)
	}
	if cb.Type != slack.InteractionTypeBlockActions {
		return nil // nothing of ours
	}
	for _, action := range cb.ActionCallback.BlockActions {
		if action.ActionID != "approve" && action.ActionID != "reject" {
			continue
		}
		answer := remediator.Answer{Incident: action.Value, By: cb.User.ID, Name: cb.User.Name, Via: remediator.ViaSlack,
			Approve: action.ActionID == "approve", Channel: cb.Channel.ID}
		data, _ := json.Marshal(answer)
		if _, err := a.Publisher.Publish(ctx, a.AnswersSubject, data, key+":"+action.ActionID); err != nil {
			return remediator.Errorf(remediator.EUNAVAILABLE, "the queue cannot take the answer now: %v", err)
		}
		a.Log.Info("slack answer enqueued", "incident", answer.Incident, "user", answer.Who(), "approve", answer.Approve)
	}
	return nil
}

// answerBody is the body of an approval or rejection over the API.
type answerBody struct {
	Approver string `json:"approver"`
	Comment  string `json:"comment"`
}

// operator says who calls the operator API: an operator token of one's own names them; the
// shared token lets the caller name themselves (named).
func (a *api) operator(c echo.Context, named string) (by, via string, err error) {
	if !a.operatorAPI() {
		return "", "", remediator.Errorf(remediator.EFORBIDDEN, "the operator API is off: set api.operators_file or api.bearer_token_file")
	}
	by, shared := a.tokenOf(presented(c.Request()))
	switch {
	case by != "" && named != "" && named != by:
		return "", "", remediator.Errorf(remediator.EFORBIDDEN, "this token is %s's, not %s's", by, named)
	case by != "":
		return by, remediator.ViaAPI, nil
	case !shared:
		return "", "", remediator.Errorf(remediator.EUNAUTHORIZED, "missing or wrong operator token")
	}
	by = strings.TrimSpace(named)
	switch {
	case by == "":
		return "", "", remediator.Errorf(remediator.EINVALID, "the shared operator token does not say who you are: name yourself: --as NAME on the command line, Your name on the incidents page, approver in the API body")
	case remediator.LooksLikeSlackID(by):
		return "", "", remediator.Errorf(remediator.EFORBIDDEN, "approver: %q is a Slack user ID, which the shared token cannot vouch for: answer in Slack, or with an operator token of your own", by)
	}
	for name := range a.Operators {
		if strings.EqualFold(name, by) {
			return "", "", remediator.Errorf(remediator.EFORBIDDEN, "approver: %s has an operator token of their own: answer with it, not the shared token", by)
		}
	}
	return by, remediator.ViaSharedAPI, nil
}

// operatorAPI says whether operators have tokens: then they answer over the API, and every
// read of incidents needs a token too.
func (a *api) operatorAPI() bool { return a.OperatorToken != "" || len(a.Operators) > 0 }

// tokenOf says whose token got is: an operator's own (their name), or the shared one.
func (a *api) tokenOf(got string) (operator string, shared bool) {
	if got == "" {
		return "", false
	}
	for name, token := range a.Operators {
		if sameSecret(got, token) {
			return name, false
		}
	}
	return "", a.OperatorToken != "" && sameSecret(got, a.OperatorToken)
}

// answer takes an approval or rejection from an operator, over the API. An operator token of
// one's own names the approver; the shared token lets the caller name one, and the worker
// counts at most one approval given that way. Either way the approver must be one the
// incident's policy names.
func (a *api) answer(approve bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		var body answerBody
		if err := decodeBody(c, &body, `{"approver": "name", "comment": "..."}`); err != nil {
			return err
		}
		by, via, err := a.operator(c, body.Approver)
		if err != nil {
			return err
		}
		answer := remediator.Answer{Incident: c.Param("id"), Approve: approve, Comment: body.Comment, By: by, Via: via}
		inc, err := a.Answers.Answer(c.Request().Context(), answer)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, inc)
	}
}
