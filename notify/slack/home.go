package slack

import (
	"context"
	"fmt"
	"slices"

	"github.com/slack-go/slack"

	"github.com/remediator/remediator"
)

// homeListed is how many incidents each part of the App Home lists: a view holds at most 100
// blocks.
const homeListed = 20

// publishHome draws a user's App Home: the incidents waiting for their approval, then every
// open incident, the newest first.
func (n *Notifier) publishHome(ctx context.Context, userID string) error {
	if n.cfg.Open == nil {
		return nil
	}
	open, err := n.cfg.Open(ctx)
	if err != nil {
		return err
	}
	slices.SortFunc(open, func(x, y *remediator.Incident) int { return y.CreatedAt.Compare(x.CreatedAt) })
	var yours []*remediator.Incident
	for _, inc := range open {
		if inc.State == remediator.StateAwaitingApproval && inc.Approval != nil && inc.Cancel == nil &&
			!answered(inc.Approval, userID) && n.cfg.MayAnswer != nil && n.cfg.MayAnswer(ctx, inc, userID) {
			yours = append(yours, inc)
		}
	}
	view := slack.HomeTabViewRequest{Type: slack.VTHomeTab, Blocks: slack.Blocks{BlockSet: homeBlocks(yours, open, n.reportURL)}}
	if _, err := n.api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: userID, View: view}); err != nil {
		return classify(err, "views.publish for %s", userID)
	}
	return nil
}

// answered says whether the chat user approved the request already: by their Slack ID, or
// as the operator it belongs to (Approval.ChatID).
func answered(r *remediator.ApprovalRequest, userID string) bool {
	return slices.ContainsFunc(r.Approvals, func(a remediator.Approval) bool { return a.By == userID || a.ChatID == userID })
}

// homeBlocks are the App Home's blocks.
func homeBlocks(yours, open []*remediator.Incident, reportURL func(*remediator.Incident) string) []slack.Block {
	header := func(text string) slack.Block {
		return slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, text, false, false))
	}
	line := func(inc *remediator.Incident) slack.Block {
		text := fmt.Sprintf("%s *<%s|%s>* on *%s*: %s", stateEmoji[inc.State], reportURL(inc), escape(inc.ID), escape(inc.Cluster), escape(inc.About()))
		if a := inc.Approval; a != nil && inc.State == remediator.StateAwaitingApproval {
			text += fmt.Sprintf("\nWaits before *%s* for %d of %d approval(s), until %s.", escape(a.Gate), len(a.Approvals), a.Required, a.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"))
		} else if inc.Reason != "" {
			text += "\n" + escape(inc.Reason)
		}
		return slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, truncate(text, maxSection), false, false), nil, nil)
	}
	list := func(incs []*remediator.Incident, none string) []slack.Block {
		if len(incs) == 0 {
			return []slack.Block{slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, none, false, false), nil, nil)}
		}
		var blocks []slack.Block
		for i, inc := range incs {
			if i == homeListed {
				blocks = append(blocks, slack.NewContextBlock("", slack.NewTextBlockObject(slack.MarkdownType,
					fmt.Sprintf("…and %d more on the incidents page.", len(incs)-homeListed), false, false)))
				break
			}
			blocks = append(blocks, line(inc))
		}
		return blocks
	}
	blocks := []slack.Block{header("Waiting for your approval")}
	blocks = append(blocks, list(yours, "Nothing waits for you.")...)
	blocks = append(blocks, slack.NewDividerBlock(), header("Open incidents"))
	return append(blocks, list(open, ":white_check_mark: No open incidents.")...)
}
