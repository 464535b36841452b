package etcdops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/poll"
)

// probeTimeout bounds the whole write probe.
const probeTimeout = 30 * time.Second

// ProbeKey is the key of an incident's write probe under prefix.
func ProbeKey(prefix, incident string) string {
	return strings.TrimSuffix(prefix, "/") + "/" + incident
}

// Probe writes key through kv (via names where that goes), reads it back from every member
// from its own data (serializably, at the write's revision), checks that they all hold the
// same number of keys there, and deletes the key. It proves that the cluster takes writes and
// that every member replicates them. A write etcd refuses for lack of space is EPRECONDITION.
func Probe(ctx context.Context, cl *clientv3.Client, kv clientv3.KV, via string, members []Member, key string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	value := time.Now().UTC().Format(time.RFC3339Nano)
	put, err := kv.Put(ctx, key, value)
	if errors.Is(rpctypes.Error(err), rpctypes.ErrNoSpace) {
		return "", remediator.Errorf(remediator.EPRECONDITION, "the probe write to %s was refused: %w", key, err)
	}
	if err != nil {
		return "", Classify(err, "probe write to %s through %s", key, via)
	}
	defer kv.Delete(ctx, key) //nolint:errcheck // a probe left behind is harmless; the reads said whether it was replicated
	rev := put.Header.Revision
	var names []string
	var want int64 = -1
	for _, m := range members {
		got, count, err := readAt(ctx, cl, m.Endpoint, key, rev)
		if err != nil {
			return "", remediator.Errorf(remediator.EUNAVAILABLE, "member %s: %w", m, err)
		}
		if got != value {
			return "", remediator.Errorf(remediator.EPRECONDITION, "member %s reads %q for the probe key %s, not what was written", m, got, key)
		}
		if want >= 0 && count != want {
			return "", remediator.Errorf(remediator.EPRECONDITION, "member %s holds %d keys at revision %d, another member %d: their data differ", m, count, rev, want)
		}
		want = count
		names = append(names, m.Name)
	}
	return fmt.Sprintf("wrote %s at revision %d; %s each read it back and hold the same %d keys at that revision", key, rev, strings.Join(names, ", "), want), nil
}

// readAt reads a key and counts the keyspace at rev on one member, from its own data. A
// member that has not applied rev yet is waited for, within the probe's deadline.
func readAt(ctx context.Context, cl *clientv3.Client, endpoint, key string, rev int64) (value string, count int64, err error) {
	conn, err := cl.Dial(endpoint)
	if err != nil {
		return "", 0, err
	}
	defer conn.Close()
	kv := clientv3.NewKVFromKVClient(pb.NewKVClient(conn), nil)
	err = poll.Until(ctx, 0, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		got, err := kv.Get(ctx, key, clientv3.WithSerializable(), clientv3.WithRev(rev))
		if errors.Is(rpctypes.Error(err), rpctypes.ErrFutureRev) {
			return false, err
		}
		if err != nil {
			return false, poll.Stop(fmt.Errorf("read %s at revision %d: %w", key, rev, err))
		}
		all, err := kv.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable(), clientv3.WithRev(rev))
		if err != nil {
			return false, poll.Stop(fmt.Errorf("count the keys at revision %d: %w", rev, err))
		}
		if count = all.Count; len(got.Kvs) == 1 {
			value = string(got.Kvs[0].Value)
		}
		return true, nil
	})
	return value, count, err
}
