package handlers

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/queue"
)

// TestAClickDeliveredToTwoReplicasIsOneAnswer: Slack sends a Socket Mode envelope to any open
// connection, and again when its acknowledgement was late, perhaps to another replica. The
// queue takes the click once, by its trigger ID, whichever replica enqueues it.
func TestAClickDeliveredToTwoReplicasIsOneAnswer(t *testing.T) {
	f := newFixture(t, "")
	replica := func() *api {
		return New(Config{Publisher: f.q, AnswersSubject: queue.SubjectAnswer, Replays: f.q, Registry: prometheus.NewRegistry(), Clusters: []string{"prod"}}).api
	}
	one, two := replica(), replica()
	click := func(user, trigger string) slack.InteractionCallback {
		var cb slack.InteractionCallback
		cb.Type = slack.InteractionTypeBlockActions
		cb.User.ID, cb.TriggerID = user, trigger
		cb.ActionCallback.BlockActions = []*slack.BlockAction{{ActionID: "approve", Value: "20261207-030000-aaaaaa"}}
		return cb
	}
	ctx := context.Background()
	for _, a := range []*api{one, two, one} {
		if err := a.takeInteraction(ctx, click("U01ALICE", "1.2.3"), "slack-trigger:1.2.3"); err != nil {
			t.Fatal(err)
		}
	}
	// Another click, after them: once it is read, every copy of the first would have been.
	if err := two.takeInteraction(ctx, click("U02BOB", "4.5.6"), "slack-trigger:4.5.6"); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = f.q.Consume(ctx, queue.Executor, 1, time.Second, func(_ context.Context, d queue.Delivery) error {
		var a remediator.Answer
		if json.Unmarshal(d.Data, &a) == nil {
			got[a.By]++
			if a.By == "U02BOB" {
				cancel()
			}
		}
		return nil
	}, nil)
	if got["U01ALICE"] != 1 || got["U02BOB"] != 1 {
		t.Errorf("answers taken: %v, want alice's click once however many replicas enqueued it, and bob's", got)
	}
}
