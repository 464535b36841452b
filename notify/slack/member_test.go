package slack

import (
	"context"
	"testing"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/slacktest"
)

// newMemberNotifier returns a notifier that asks s, and nothing else of it.
func newMemberNotifier(s *slacktest.Server) *Notifier {
	return New(Config{Token: token, Channel: "#etcd", APIURL: s.URL()})
}

func TestMember(t *testing.T) {
	for _, tc := range []struct {
		name       string
		enterprise string // of the bot's workspace, for Enterprise Grid
		user       *slacktest.User
		want       remediator.ChatMember
		full       bool
	}{
		{"a full member", "", nil, remediator.ChatMember{ID: "U01ALICE"}, true},
		{"a multi-channel guest", "", &slacktest.User{Guest: true}, remediator.ChatMember{ID: "U01ALICE", Guest: true}, false},
		{"a single-channel guest", "", &slacktest.User{UltraGuest: true}, remediator.ChatMember{ID: "U01ALICE", Guest: true}, false},
		{"Slack Connect: another workspace", "", &slacktest.User{TeamID: "T0OTHER"}, remediator.ChatMember{ID: "U01ALICE", External: true}, false},
		{"Slack Connect: a stranger", "", &slacktest.User{Stranger: true}, remediator.ChatMember{ID: "U01ALICE", External: true}, false},
		{"a bot", "", &slacktest.User{Bot: true}, remediator.ChatMember{ID: "U01ALICE", Bot: true}, false},
		{"an app's user", "", &slacktest.User{AppUser: true}, remediator.ChatMember{ID: "U01ALICE", Bot: true}, false},
		{"a deactivated user", "", &slacktest.User{Deleted: true}, remediator.ChatMember{ID: "U01ALICE", Deleted: true}, false},
		{"Enterprise Grid: another workspace of the organization", "E0CORP", &slacktest.User{TeamID: "T0SISTER"},
			remediator.ChatMember{ID: "U01ALICE"}, true},
		{"Enterprise Grid: another organization", "E0CORP", &slacktest.User{TeamID: "T0OTHER", EnterpriseID: "E0OTHER"},
			remediator.ChatMember{ID: "U01ALICE", External: true}, false},
		{"Enterprise Grid: a stranger of the organization's ID", "E0CORP", &slacktest.User{TeamID: "T0OTHER", Stranger: true},
			remediator.ChatMember{ID: "U01ALICE", External: true}, false},
		{"Enterprise Grid: a guest of the organization", "E0CORP", &slacktest.User{TeamID: "T0SISTER", Guest: true},
			remediator.ChatMember{ID: "U01ALICE", Guest: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := slacktest.New(t, token)
			if tc.enterprise != "" {
				s.SetEnterprise(tc.enterprise)
			}
			if tc.user != nil {
				s.SetUser("U01ALICE", *tc.user)
			}
			got, err := newMemberNotifier(s).Member(context.Background(), "U01ALICE")
			if err != nil || got != tc.want || got.FullMember() != tc.full {
				t.Errorf("Member: %+v (full member %t), %v; want %+v (%t)", got, got.FullMember(), err, tc.want, tc.full)
			}
			if infos := s.Calls("users.info"); len(infos) != 1 || infos[0].Form.Get("user") != "U01ALICE" {
				t.Errorf("users.info calls %+v, want one for U01ALICE", infos)
			}
		})
	}
}

func TestMemberAsksForTheBotsTeamOnce(t *testing.T) {
	s := slacktest.New(t, token)
	n := newMemberNotifier(s)
	ctx := context.Background()
	for _, id := range []string{"U01ALICE", "U02BOB", "U01ALICE"} {
		if m, err := n.Member(ctx, id); err != nil || !m.FullMember() {
			t.Fatalf("%s: %+v, %v", id, m, err)
		}
	}
	// Alice made a guest in Slack: that is what counts, at her next click.
	s.SetUser("U01ALICE", slacktest.User{Guest: true})
	if m, err := n.Member(ctx, "U01ALICE"); err != nil || m.FullMember() {
		t.Errorf("Alice made a guest: %+v, %v; want her a guest", m, err)
	}
	if a, u := len(s.Calls("auth.test")), len(s.Calls("users.info")); a != 1 || u != 4 {
		t.Errorf("%d auth.test and %d users.info calls, want 1 and 4", a, u)
	}
}

func TestMemberWithSlackDownIsRetried(t *testing.T) {
	s := slacktest.New(t, token)
	n := newMemberNotifier(s)
	ctx := context.Background()

	s.Down(1) // auth.test fails
	if _, err := n.Member(ctx, "U01ALICE"); !remediator.Retriable(err) {
		t.Errorf("auth.test down: %v, want a retriable error", err)
	}
	if m, err := n.Member(ctx, "U01ALICE"); err != nil || !m.FullMember() {
		t.Errorf("once Slack is back: %+v, %v", m, err)
	}
	s.Down(1) // users.info fails
	if _, err := n.Member(ctx, "U02BOB"); !remediator.Retriable(err) {
		t.Errorf("users.info down: %v, want a retriable error", err)
	}
	if m, err := n.Member(ctx, "U02BOB"); err != nil || !m.FullMember() {
		t.Errorf("once Slack is back: %+v, %v", m, err)
	}
}

func TestMemberWithABadTokenIsNotRetried(t *testing.T) {
	s := slacktest.New(t, token)
	n := New(Config{Token: "xoxb-wrong", APIURL: s.URL()})
	if _, err := n.Member(context.Background(), "U01ALICE"); err == nil || remediator.Retriable(err) {
		t.Errorf("with a bad token: %v, want a permanent error", err)
	}
}
