package slacktest_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"

	"github.com/remediator/remediator/internal/slacktest"
)

const (
	botToken = "xoxb-test"
	appToken = "xapp-test"
)

// wait is how long a test waits for something the client does on its own.
const wait = 5 * time.Second

func newClient(s *slacktest.Server, appToken string) *socketmode.Client {
	return socketmode.New(slack.New(botToken, slack.OptionAppLevelToken(appToken), slack.OptionAPIURL(s.URL())))
}

// run runs client until the test ends and passes on its events; it acks every envelope, a
// slash command with {"text": "<command> <text>"}, unless ack is false.
func run(t *testing.T, client *socketmode.Client, ack bool) <-chan socketmode.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan socketmode.Event, 100)
	ran, read := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ran)
		_ = client.RunContext(ctx)
	}()
	go func() {
		defer close(read)
		for {
			select {
			case <-ctx.Done():
				return
			case evt := <-client.Events:
				if ack && evt.Request != nil && evt.Request.EnvelopeID != "" {
					var payload any
					if cmd, ok := evt.Data.(slack.SlashCommand); ok {
						payload = map[string]string{"text": cmd.Command + " " + cmd.Text}
					}
					if err := client.Ack(*evt.Request, payload); err != nil {
						t.Errorf("ack %s: %v", evt.Request.EnvelopeID, err)
					}
				}
				select {
				case events <- evt:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-ran
		<-read
	})
	return events
}

// next returns the next event of the type, skipping others.
func next(t *testing.T, events <-chan socketmode.Event, typ socketmode.EventType) socketmode.Event {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case evt := <-events:
			if evt.Type == typ {
				return evt
			}
		case <-timeout:
			t.Fatalf("no %s event within %v", typ, wait)
		}
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSocketDelivers(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, botToken)
	s.EnableSocket(appToken)
	events := run(t, newClient(s, appToken), true)

	if c := next(t, events, socketmode.EventTypeConnected).Data.(*socketmode.ConnectedEvent); c.ConnectionCount != 0 {
		t.Errorf("first connection count = %d, want 0", c.ConnectionCount)
	}
	hello := next(t, events, socketmode.EventTypeHello).Request
	if hello.NumConnections != 1 || hello.ConnectionInfo.AppID != slacktest.App {
		t.Errorf("hello = %+v, want 1 connection of %s", hello, slacktest.App)
	}
	if got := len(s.Calls("apps.connections.open")); got != 1 {
		t.Errorf("apps.connections.open calls = %d, want 1", got)
	}

	ack, err := s.Send(slacktest.SlashCommands, slacktest.SlashCommand("U01ALICE", "/remediate", "status etcd-a"))
	if err != nil {
		t.Fatal(err)
	}
	if string(ack) != `{"text":"/remediate status etcd-a"}` {
		t.Errorf("slash command ack = %s", ack)
	}
	evt := next(t, events, socketmode.EventTypeSlashCommand)
	if cmd := evt.Data.(slack.SlashCommand); cmd.UserID != "U01ALICE" || cmd.Text != "status etcd-a" || cmd.APIAppID != slacktest.App {
		t.Errorf("slash command = %+v", cmd)
	}
	if !evt.Request.AcceptsResponsePayload {
		t.Error("a slash command envelope should accept a response payload")
	}

	if _, err := s.Send(slacktest.Interactive, slacktest.BlockActions("U01ALICE", "alice", "approve", "inc-1")); err != nil {
		t.Fatal(err)
	}
	cb := next(t, events, socketmode.EventTypeInteractive).Data.(slack.InteractionCallback)
	if cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) != 1 || cb.ActionCallback.BlockActions[0].Value != "inc-1" {
		t.Errorf("interaction = %+v", cb)
	}

	ack, err = s.Send(slacktest.EventsAPI, slacktest.AppHomeOpened("U01ALICE"))
	if err != nil || ack != nil {
		t.Fatalf("app_home_opened ack = %s, %v; want none, nil", ack, err)
	}
	outer := next(t, events, socketmode.EventTypeEventsAPI).Data.(slackevents.EventsAPIEvent)
	home, ok := outer.InnerEvent.Data.(*slackevents.AppHomeOpenedEvent)
	if !ok || home.User != "U01ALICE" || home.Tab != "home" {
		t.Errorf("inner event = %#v", outer.InnerEvent.Data)
	}
}

func TestSocketReconnects(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, botToken)
	s.EnableSocket(appToken)
	events := run(t, newClient(s, appToken), true)
	next(t, events, socketmode.EventTypeHello)

	s.DropSocket()
	waitFor(t, "reconnect after DropSocket", func() bool { return s.Connects() == 2 })
	if c := next(t, events, socketmode.EventTypeConnected).Data.(*socketmode.ConnectedEvent); c.ConnectionCount != 1 {
		t.Errorf("connection count after drop = %d, want 1", c.ConnectionCount)
	}
	if _, err := s.Send(slacktest.SlashCommands, slacktest.SlashCommand("U01ALICE", "/remediate", "after drop")); err != nil {
		t.Fatal(err)
	}

	if err := s.Disconnect("refresh_requested"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reconnect after disconnect", func() bool { return s.Connects() == 3 && s.Connected() == 1 })
	if _, err := s.Send(slacktest.SlashCommands, slacktest.SlashCommand("U01ALICE", "/remediate", "after disconnect")); err != nil {
		t.Fatal(err)
	}
}

func TestSocketDownBacksOff(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, botToken)
	s.EnableSocket(appToken)
	events := run(t, newClient(s, appToken), true)
	next(t, events, socketmode.EventTypeHello)

	s.SocketDown(true)
	s.DropSocket()
	first := next(t, events, socketmode.EventTypeConnectionError).Data.(*slack.ConnectionErrorEvent)
	second := next(t, events, socketmode.EventTypeConnectionError).Data.(*slack.ConnectionErrorEvent)
	if second.Backoff <= first.Backoff {
		t.Errorf("backoff went %v then %v, want it growing", first.Backoff, second.Backoff)
	}
	if code, ok := errors.AsType[slack.StatusCodeError](first.ErrorObj); !ok || code.Code != 503 {
		t.Errorf("connection error = %v, want a 503", first.ErrorObj)
	}

	s.SocketDown(false)
	if _, err := s.Send(slacktest.SlashCommands, slacktest.SlashCommand("U01ALICE", "/remediate", "after outage")); err != nil {
		t.Fatal(err)
	}
	if s.Connects() != 2 {
		t.Errorf("connects = %d, want 2", s.Connects())
	}
}

func TestSocketNoAck(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, botToken)
	s.EnableSocket(appToken)
	events := run(t, newClient(s, appToken), false)
	next(t, events, socketmode.EventTypeHello)

	start := time.Now()
	_, err := s.Send(slacktest.SlashCommands, slacktest.SlashCommand("U01ALICE", "/remediate", "ignored"))
	if !errors.Is(err, slacktest.ErrNoAck) {
		t.Fatalf("err = %v, want ErrNoAck", err)
	}
	if d := time.Since(start); d < slacktest.AckTimeout {
		t.Errorf("gave up after %v, before Slack's %v", d, slacktest.AckTimeout)
	}
}

func TestSocketNoClient(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, botToken)
	s.EnableSocket(appToken)
	if _, err := s.Send(slacktest.EventsAPI, slacktest.AppHomeOpened("U01ALICE")); !errors.Is(err, slacktest.ErrNoClient) {
		t.Fatalf("err = %v, want ErrNoClient", err)
	}
}

func TestSocketRefusesToken(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, botToken)
	s.EnableSocket(appToken)
	for _, tc := range []struct {
		name, token, want string
	}{
		{"a wrong app token", "xapp-wrong", "invalid_auth"},
		{"no app token", "", "invalid_auth"},
		{"the bot token", botToken, "not_allowed_token_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			api := slack.New(botToken, slack.OptionAppLevelToken(tc.token), slack.OptionAPIURL(s.URL()))
			if _, _, err := api.StartSocketModeContext(ctx); err == nil || err.Error() != tc.want {
				t.Errorf("apps.connections.open: err = %v, want %s", err, tc.want)
			}
		})
	}

	// socketmode gives up at once on invalid_auth instead of backing off.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := newClient(s, "xapp-wrong").RunContext(ctx); err == nil || err.Error() != "invalid_auth" {
		t.Errorf("RunContext = %v, want invalid_auth", err)
	}
	if s.Connects() != 0 || len(s.Calls("apps.connections.open")) != 0 {
		t.Errorf("connects = %d, calls = %d; want none", s.Connects(), len(s.Calls("apps.connections.open")))
	}
}

func TestViewsPublish(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, botToken)
	api := slack.New(botToken, slack.OptionAPIURL(s.URL()))
	view := slack.HomeTabViewRequest{Type: slack.VTHomeTab, Blocks: slack.Blocks{BlockSet: []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "*No open incidents*", false, false), nil, nil),
	}}}
	resp, err := api.PublishViewContext(context.Background(), slack.PublishViewContextRequest{UserID: "U01ALICE", View: view})
	if err != nil {
		t.Fatal(err)
	}
	if resp.View.ID == "" || resp.View.Type != slack.VTHomeTab {
		t.Errorf("view = %+v", resp.View)
	}
	calls := s.Calls("views.publish")
	if len(calls) != 1 || calls[0].Form.Get("user_id") != "U01ALICE" {
		t.Fatalf("views.publish calls = %+v", calls)
	}
	var sent struct {
		Blocks []map[string]any `json:"blocks"`
	}
	if err := json.Unmarshal([]byte(calls[0].Form.Get("view")), &sent); err != nil || len(sent.Blocks) != 1 {
		t.Errorf("recorded view = %s (%v)", calls[0].Form.Get("view"), err)
	}
}
