package worker

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/remediator/remediator"
)

// notify asks the notifier to bring the humans up to date on the incident. It never fails the
// work: a notification that cannot be enqueued is logged, and the next one syncs everything.
func (w *Worker) notify(ctx context.Context, inc *remediator.Incident, ephemeral *remediator.Ephemeral) {
	if w.NotifySubject == "" || inc == nil {
		return
	}
	data, _ := json.Marshal(remediator.Notice{Incident: inc.ID, Ephemeral: ephemeral})
	// One notice per change of the incident: its timeline length says which change.
	msgID := fmt.Sprintf("notify-%s-%d", inc.ID, len(inc.Timeline))
	if ephemeral != nil {
		msgID += "-" + ephemeral.User
	}
	rctx, cancel := recordCtx(ctx)
	defer cancel()
	if _, err := w.Publisher.Publish(rctx, w.NotifySubject, data, msgID); err != nil {
		w.Log.Warn("cannot enqueue a notification; the next one will catch up", "incident", inc.ID, "err", err)
	}
}
