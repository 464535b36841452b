package handlers

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/remediator/remediator"
)

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
