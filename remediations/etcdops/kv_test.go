package etcdops

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestCompactAndWaitWaitsForEveryMember compacts a history on 3 members and checks that,
// when it returns, every member has finished: its count of compactions went up. Without
// metrics it waits on the space in use instead.
func TestCompactAndWaitWaitsForEveryMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, members := threeMembers(ctx, t)
	v := View{Client: cl, Members: members, Metrics: http.DefaultClient}
	history := func() int64 {
		t.Helper()
		value := strings.Repeat("h", 64<<10)
		var rev int64
		for i := range 200 {
			resp, err := cl.Put(ctx, fmt.Sprintf("h/%d", i%4), value)
			if err != nil {
				t.Fatal(err)
			}
			rev = resp.Header.Revision
		}
		return rev
	}
	rev := history()
	before, ok := compactions(ctx, v)
	if !ok {
		t.Fatal("the members' compaction counts are unreadable")
	}
	already, settled, err := CompactAndWait(ctx, v, rev, 30*time.Second)
	if err != nil || already || !strings.HasPrefix(settled, "every member finished compacting within") {
		t.Fatalf("%v, %q, %v; want every member finished", already, settled, err)
	}
	after, _ := compactions(ctx, v)
	for i, m := range members {
		if after[i] <= before[i] {
			t.Errorf("member %s finished %d compactions, %d before: want one more", m.Name, after[i], before[i])
		}
	}
	// Without metrics, and for a compaction that had happened, it waits on the space in use.
	rev = history()
	v.Metrics = nil
	if _, settled, err := CompactAndWait(ctx, v, rev, 30*time.Second); err != nil || !strings.HasPrefix(settled, "every member finished compacting within") {
		t.Errorf("without metrics: %q, %v; want every member finished", settled, err)
	}
	if already, _, err := CompactAndWait(ctx, v, rev, 30*time.Second); err != nil || !already {
		t.Errorf("compacting again to %d: already %v, %v; want already", rev, already, err)
	}
}
