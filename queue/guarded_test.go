package queue

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/remediator/remediator"
)

func TestGuardedKeepsTheNewestValueOfEachClusterAndKey(t *testing.T) {
	q := openQueue(t, Options{})
	ctx := context.Background()
	g := q.Guarded
	// etcd keys hold what a bucket key may not: "_sd.placement/..." has dots, slashes,
	// underscores; others hold spaces, "*" and ">" (NATS wildcards) or any byte.
	keys := []string{"_sd.placement/m3db/prod/m3db", "a b*>", "\x00\xff..", strings.Repeat("long/", 200)}
	for _, cluster := range []string{"prod", "staging"} {
		for _, key := range keys {
			for i := range 2 {
				if err := g.Put(ctx, cluster, key, fmt.Appendf(nil, "%s %q %d", cluster, key, i)); err != nil {
					t.Fatalf("put %s %q: %v", cluster, key, err)
				}
			}
		}
	}
	for _, cluster := range []string{"prod", "staging"} {
		for _, key := range keys {
			got, err := g.Get(ctx, cluster, key)
			if want := fmt.Sprintf("%s %q %d", cluster, key, 1); err != nil || string(got) != want {
				t.Errorf("get %s %q: %q (%v), want %q", cluster, key, got, err, want)
			}
		}
	}
	if _, err := g.Get(ctx, "prod", "_sd.placement/m3db/prod/m3coordinator"); remediator.ErrorCode(err) != remediator.ENOTFOUND {
		t.Errorf("get of a key never saved: %v, want not_found", err)
	}
	if _, err := g.Get(ctx, "other", "_sd.placement/m3db/prod/m3db"); remediator.ErrorCode(err) != remediator.ENOTFOUND {
		t.Errorf("get of another cluster's key: %v, want not_found", err)
	}
}

func TestGuardedKeepsOlderValues(t *testing.T) {
	q := openQueue(t, Options{})
	ctx := context.Background()
	for i := range guardedHistory + 2 {
		if err := q.Guarded.Put(ctx, "prod", "k", fmt.Appendf(nil, "v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	k, _ := guardedKey("prod", "k")
	entries, err := q.Guarded.kv.History(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, string(e.Value()))
	}
	if want := "[v2 v3 v4 v5 v6]"; fmt.Sprint(got) != want {
		t.Errorf("history %v, want the last %d values %s", got, guardedHistory, want)
	}
}

func TestGuardedRefusesWhatItCannotStore(t *testing.T) {
	q := openQueue(t, Options{})
	ctx := context.Background()
	err := q.Guarded.Put(ctx, "prod", "k", make([]byte, embeddedMaxPayload+1))
	if remediator.ErrorCode(err) != remediator.ETOOLARGE {
		t.Errorf("put over max_payload: %v, want too_large", err)
	}
	if _, err := q.Guarded.Get(ctx, "prod", "k"); remediator.ErrorCode(err) != remediator.ENOTFOUND {
		t.Errorf("after a refused put: %v, want nothing stored", err)
	}
	if err := q.Guarded.Put(ctx, "prod", "", []byte("v")); remediator.ErrorCode(err) != remediator.EINVALID {
		t.Errorf("put of an empty key: %v, want invalid", err)
	}
}
