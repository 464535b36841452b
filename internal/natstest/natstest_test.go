package natstest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/remediator/remediator/internal/natstest"
	"github.com/remediator/remediator/queue"
)

// connect connects to the whole cluster, reconnecting at once and without end, as a service
// that must ride out a node's death would.
func connect(t *testing.T, c *natstest.Cluster, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	opts = append(opts, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.Timeout(2*time.Second))
	nc, err := nats.Connect(c.URL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// eventually retries f until it succeeds or the deadline passes: after a kill, the cluster
// takes an election to answer again, how long one takes is the cluster's business.
func eventually(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createR3 creates a file stream of three replicas and checks that it has them.
func createR3(t *testing.T, js jetstream.JetStream, name, subject string) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{subject}, Replicas: 3, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatalf("create R3 stream right after Start: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream cluster = %+v, want a leader and 2 replicas", info.Cluster)
	}
	return s
}

func publish(t *testing.T, js jetstream.JetStream, subject, data string) {
	t.Helper()
	// The message ID makes a retried publish whose first ack was lost land once.
	eventually(t, "publish "+data, func(ctx context.Context) error {
		_, err := js.Publish(ctx, subject, []byte(data), jetstream.WithMsgID(data))
		return err
	})
}

// leader returns the index of the node that leads stream s.
func leader(t *testing.T, s jetstream.Stream) int {
	t.Helper()
	var name string
	eventually(t, "stream leader", func(ctx context.Context) error {
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return errors.New("no stream leader")
		}
		name = info.Cluster.Leader
		return nil
	})
	i, err := strconv.Atoi(strings.TrimPrefix(name, "n"))
	if err != nil {
		t.Fatalf("stream leader %q is no node of the cluster", name)
	}
	return i
}

// readBack reads messages 1..len(want) of the stream, polling until the stream answers.
func readBack(t *testing.T, s jetstream.Stream, want ...string) {
	t.Helper()
	for i, w := range want {
		seq := uint64(i + 1)
		eventually(t, fmt.Sprintf("read message %d", seq), func(ctx context.Context) error {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				return err
			}
			if string(m.Data) != w {
				t.Fatalf("message %d = %q, want %q", seq, m.Data, w)
			}
			return nil
		})
	}
}

// TestFailover kills the stream's leader between two publishes and reads both back from the
// survivors, then restarts it and kills the new leader, so that the restarted node (caught up
// from its store and its peers) is one of the two that still answer.
func TestFailover(t *testing.T) {
	start := time.Now()
	c := natstest.Start(t, natstest.Options{})
	if len(c.URLs) != 3 || !strings.HasPrefix(c.URLs[0], "nats://127.0.0.1:") || strings.Count(c.URL(), ",") != 2 {
		t.Fatalf("URLs = %q, URL() = %q", c.URLs, c.URL())
	}
	t.Logf("cluster ready in %s", time.Since(start).Round(time.Millisecond))
	js := connect(t, c)
	s := createR3(t, js, "FAILOVER", "failover.>")

	publish(t, js, "failover.a", "one")
	first := leader(t, s)
	c.Kill(first)
	publish(t, js, "failover.a", "two")
	readBack(t, s, "one", "two")
	second := leader(t, s)
	if second == first {
		t.Fatalf("stream leader is still the killed n%d", first)
	}
	t.Logf("killed n%d, n%d took over, failover done in %s", first, second, time.Since(start).Round(time.Millisecond))

	c.Restart(first)
	c.Kill(second)
	publish(t, js, "failover.a", "three")
	readBack(t, s, "one", "two", "three")
	if third := leader(t, s); third == second {
		t.Fatalf("stream leader is still the killed n%d", second)
	}
	t.Logf("restarted n%d, killed n%d, done in %s", first, second, time.Since(start).Round(time.Millisecond))
}

// TestAccounts runs the cluster on the account queue.WriteServerConfig writes for an external
// NATS and proves that its service user gets R3 JetStream there, and that no one gets in
// without a user.
func TestAccounts(t *testing.T) {
	service, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	servicePub, err := service.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	agent, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	agentPub, err := agent.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	var conf bytes.Buffer
	if err := queue.WriteServerConfig(&conf, "conf", "REMEDIATOR", servicePub, map[string]string{"prod/node-1.example": agentPub}); err != nil {
		t.Fatal(err)
	}
	c := natstest.Start(t, natstest.Options{Accounts: conf.String()})

	if nc, err := nats.Connect(c.URL(), nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Fatal("connected without a user to a cluster with accounts")
	}
	js := connect(t, c, nats.Nkey(servicePub, service.Sign))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatalf("JetStream in the REMEDIATOR account: %v", err)
	}
	if info.Domain != "" || info.Streams != 0 {
		t.Fatalf("account info = %+v, want a fresh account", info)
	}
	s := createR3(t, js, "ACCOUNTS", "accounts.>")
	publish(t, js, "accounts.a", "one")
	readBack(t, s, "one")

	// The agent's user, with its permissions as written, gets in too.
	nc, err := nats.Connect(c.URL(), nats.Nkey(agentPub, agent.Sign), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("agent user: %v", err)
	}
	nc.Close()
}
