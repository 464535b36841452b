package handlers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/remediator/remediator"
)

// commandUsage is /remediator help.
const commandUsage = "*/remediator* commands:\n" +
	"• `incidents`: the open incidents\n" +
	"• `show ID`: an incident's steps, and what it waits for\n" +
	"• `approve ID [comment]`, `reject ID [reason]`: answer its approval request, as the buttons do\n" +
	"• `simulate ALERTNAME [label=value ...]`: what that alert would do now, touching nothing\n" +
	"• `help`: this"

// maxListed is how many open incidents /remediator incidents lists.
const maxListed = 20

// maxReplyRunes keeps a reply well under Slack's limits (section text, Socket Mode's 20 KB).
const maxReplyRunes = 2900

// command answers /remediator. Every answer is ephemeral: only the user who typed it sees
// it. Reads are for the workspace's full members and for operators; approve and reject are
// enqueued as a click is, and the worker applies the same rules and tells the user if they
// may not answer.
func (a *api) command(ctx context.Context, cmd slack.SlashCommand) *slack.Msg {
	text, err := a.runCommand(ctx, cmd)
	log := a.Log.With("user", cmd.UserID, "command", cmd.Command+" "+cmd.Text)
	if err != nil {
		log.Warn("slack command refused", "err", err)
		text = ":no_entry: " + mrkdwn(err.Error())
	} else {
		log.Info("slack command answered")
	}
	if r := []rune(text); len(r) > maxReplyRunes {
		text = string(r[:maxReplyRunes]) + "…"
	}
	return &slack.Msg{ResponseType: slack.ResponseTypeEphemeral, Text: text}
}

func (a *api) runCommand(ctx context.Context, cmd slack.SlashCommand) (string, error) {
	args := strings.Fields(cmd.Text)
	verb := ""
	if len(args) > 0 {
		verb, args = strings.ToLower(args[0]), args[1:]
	}
	if verb == "" || verb == "help" {
		return commandUsage, nil
	}
	if err := a.mayCommand(ctx, cmd.UserID); err != nil {
		return "", err
	}
	switch verb {
	case "incidents":
		if len(args) > 0 {
			return "", usagef("incidents takes no arguments")
		}
		return a.listForChat(ctx)
	case "show":
		if len(args) != 1 {
			return "", usagef("show takes one incident ID")
		}
		inc, err := a.Incidents.Get(ctx, args[0])
		if err != nil {
			return "", notFound(err, args[0])
		}
		return a.showForChat(inc), nil
	case "approve", "reject":
		if len(args) == 0 {
			return "", usagef("%s takes an incident ID", verb)
		}
		return a.answerFromCommand(ctx, cmd, verb == "approve", args[0], strings.Join(args[1:], " "))
	case "simulate":
		return a.simulateForChat(args)
	}
	return "", usagef("%q is not a command", verb)
}

// usagef is a command that is not understood, with the usage to fix it.
func usagef(format string, args ...any) error {
	return remediator.Errorf(remediator.EINVALID, "%s.\n%s", fmt.Sprintf(format, args...), commandUsage)
}

// notFound says that no incident has the ID asked for, or what stopped the look-up.
func notFound(err error, id string) error {
	if remediator.ErrorCode(err) == remediator.ENOTFOUND {
		return remediator.Errorf(remediator.ENOTFOUND, "no incident %s: `/remediator incidents` lists the open ones", id)
	}
	return err
}

// mayCommand lets through operators and the workspace's full members, and nobody else:
// a guest or a user of another workspace in a shared channel learns nothing of the clusters.
func (a *api) mayCommand(ctx context.Context, userID string) error {
	if _, ok := a.People[userID]; ok {
		return nil
	}
	if a.ChatMembers == nil {
		return remediator.Errorf(remediator.EFORBIDDEN, "/remediator answers operators only here (api.operators_file slack_id), and %s is none", userID)
	}
	m, err := a.ChatMembers.Member(ctx, userID)
	switch {
	case err != nil:
		return remediator.Errorf(remediator.EUNAVAILABLE, "cannot tell whether %s is a member of the workspace now: %v", userID, err)
	case !m.FullMember():
		return remediator.Errorf(remediator.EFORBIDDEN, "/remediator answers the workspace's full members and operators, not guests or users of other workspaces")
	}
	return nil
}

// listForChat lists the open incidents, the newest first.
func (a *api) listForChat(ctx context.Context) (string, error) {
	open, err := a.Incidents.Open(ctx)
	if err != nil {
		return "", err
	}
	if len(open) == 0 {
		return ":white_check_mark: No open incidents.", nil
	}
	slices.SortFunc(open, func(x, y *remediator.Incident) int { return y.CreatedAt.Compare(x.CreatedAt) })
	var b strings.Builder
	fmt.Fprintf(&b, "*%d open incident(s)*\n", len(open))
	for i, inc := range open {
		if i == maxListed {
			fmt.Fprintf(&b, "…and %d more: see %s\n", len(open)-maxListed, a.link("/", "the incidents page"))
			break
		}
		fmt.Fprintf(&b, "• %s `%s` on *%s*: %s", a.link(remediator.ReportPath(inc.ID), inc.ID), inc.State, mrkdwn(inc.Cluster), mrkdwn(inc.About()))
		if inc.Reason != "" {
			fmt.Fprintf(&b, " (%s)", mrkdwn(inc.Reason))
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}

// showForChat is an incident's summary: its state, its steps, and what it waits for.
func (a *api) showForChat(inc *remediator.Incident) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%s* on *%s*: %s\nState `%s`", a.link(remediator.ReportPath(inc.ID), inc.ID), mrkdwn(inc.Cluster), mrkdwn(inc.About()), inc.State)
	if inc.Reason != "" {
		fmt.Fprintf(&b, ": %s", mrkdwn(inc.Reason))
	}
	b.WriteString("\n")
	for i, s := range inc.Steps {
		fmt.Fprintf(&b, "%d. %s `%s` (%s risk)", i+1, mrkdwn(s.Name), s.State, s.Risk)
		if s.Error != "" {
			fmt.Fprintf(&b, ": %s", mrkdwn(s.Error))
		}
		b.WriteString("\n")
	}
	if r := inc.Approval; r != nil && inc.State == remediator.StateAwaitingApproval {
		var who []string
		for _, x := range r.Approvals {
			who = append(who, x.By)
		}
		fmt.Fprintf(&b, ":raised_hand: Waits for approval before *%s*: %d of %d given", mrkdwn(r.Gate), len(r.Approvals), r.Required)
		if len(who) > 0 {
			fmt.Fprintf(&b, " (by %s)", mrkdwn(strings.Join(who, ", ")))
		}
		fmt.Fprintf(&b, ", from %s, until %s. `/remediator approve %s` or `reject %s REASON`.\n",
			mrkdwn(inc.Gates.Approval.Approvers()), r.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"), inc.ID, inc.ID)
	}
	return b.String()
}

// answerFromCommand enqueues an approval or rejection typed as a command, as a click on the
// incident's button would be: the worker decides whether the user may answer and tells them
// if not. What can be seen here is refused at once: an incident that does not exist or
// waits for no answer.
func (a *api) answerFromCommand(ctx context.Context, cmd slack.SlashCommand, approve bool, id, comment string) (string, error) {
	inc, err := a.Incidents.Get(ctx, id)
	if err != nil {
		return "", notFound(err, id)
	}
	if inc.State != remediator.StateAwaitingApproval || inc.Approval == nil {
		return "", remediator.Errorf(remediator.EREFUSED, "incident %s is %s, not awaiting approval", inc.ID, inc.State)
	}
	// It answers the request shown to the user, as a button would.
	answer := remediator.Answer{Incident: inc.ID, Gate: inc.Approval.Gate, Attempt: max(inc.Attempt, 1), By: cmd.UserID, Name: cmd.UserName,
		Via: remediator.ViaSlack, Approve: approve, Comment: comment, Channel: cmd.ChannelID}
	key := "slack-command:" + cmd.TriggerID
	if cmd.TriggerID == "" {
		key = "slack-command:" + cmd.UserID + ":" + a.Now().UTC().Format(time.RFC3339Nano)
	}
	if err := a.enqueueAnswer(ctx, answer, key); err != nil {
		return "", err
	}
	verb := map[bool]string{true: "approval", false: "rejection"}[approve]
	return fmt.Sprintf(":inbox_tray: Your %s of %s before *%s* is being recorded, under the same rules as the buttons: the incident's message shows it, and you are told here if it is refused.",
		verb, inc.ID, mrkdwn(inc.Approval.Gate)), nil
}

// simulateForChat says what an alert of that name and labels would do now, touching nothing.
func (a *api) simulateForChat(args []string) (string, error) {
	if a.Explainer == nil {
		return "", remediator.Errorf(remediator.EUNAVAILABLE, "simulate is not available here")
	}
	if len(args) == 0 {
		return "", usagef("simulate takes an alert name")
	}
	labels := map[string]string{"alertname": args[0]}
	for _, kv := range args[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return "", usagef("%q is not label=value", kv)
		}
		labels[k] = v
	}
	name, named := labels["cluster"]
	cluster, err := resolveCluster("cluster=NAME label", name, named, a.Clusters)
	if err != nil {
		return "", remediator.Errorf(remediator.EINVALID, "%v", err)
	}
	now := a.Now()
	alert := remediator.Alert{Source: remediator.SourceAlertmanager, Status: remediator.AlertFiring, Cluster: cluster,
		Labels: labels, Annotations: map[string]string{}, StartsAt: now, ReceivedAt: now, Fingerprint: labelsFingerprint(labels)}
	text, err := a.Explainer.Explain(alert)
	if err != nil {
		return "", err
	}
	return "```\n" + text + "\n```", nil
}

// link is a Slack link to a path of remediator, or the text alone when its URL is unknown.
func (a *api) link(path, text string) string {
	if a.BaseURL == "" {
		return mrkdwn(text)
	}
	return "<" + strings.TrimSuffix(a.BaseURL, "/") + path + "|" + mrkdwn(text) + ">"
}

// mrkdwn escapes text for Slack's mrkdwn, where &, < and > are control characters.
var mrkdwn = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace
