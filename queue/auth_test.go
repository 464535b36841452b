package queue

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/tlstest"
)

// listening is an embedded server on a loopback port with TLS and two node agents, cp-1 and
// cp-2 of cluster prod, each with its own key and client certificate.
type listening struct {
	q      *Queue
	url    string
	ca     *tlstest.CA
	client tlstest.Pair
	agents map[string]nkeys.KeyPair
}

func newListening(t *testing.T) *listening {
	t.Helper()
	ca := tlstest.New(t)
	srv := ca.Issue(t, "nats", "127.0.0.1")
	l := &listening{ca: ca, client: ca.Issue(t, "agent"), agents: map[string]nkeys.KeyPair{}}
	keys := map[string]string{}
	for _, node := range []string{"cp-1", "cp-2"} {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		l.agents[node] = kp
		keys["prod/"+node] = publicKey(kp)
	}
	addr := freeAddr(t)
	l.q = openQueue(t, Options{Listen: addr, Agents: keys, TLS: TLSFiles{CAFile: ca.File, CertFile: srv.CertFile, KeyFile: srv.KeyFile}})
	l.url = "tls://" + addr
	return l
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// connect dials the listener with the given options on top of TLS with the client certificate.
func (l *listening) connect(opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{nats.RootCAs(l.ca.File), nats.ClientCert(l.client.CertFile, l.client.KeyFile), nats.MaxReconnects(0), nats.Timeout(3 * time.Second)}
	return nats.Connect(l.url, append(base, opts...)...)
}

func TestTheEmbeddedServerTakesNoClientWithoutItsKeyAndCertificate(t *testing.T) {
	l := newListening(t)
	stranger, _ := nkeys.CreateUser()
	for _, tc := range []struct {
		name string
		dial func() (*nats.Conn, error)
		want string
	}{
		{"anonymous", func() (*nats.Conn, error) { return l.connect() }, "authorization violation"},
		{"an unknown nkey", func() (*nats.Conn, error) { return l.connect(nkeyAuth(stranger)) }, "authorization violation"},
		{"the service's own key, over the network", func() (*nats.Conn, error) { return l.connect(nkeyAuth(l.q.opts.Key)) }, "authorization violation"},
		{"an agent's key, without a client certificate", func() (*nats.Conn, error) {
			return nats.Connect(l.url, nats.RootCAs(l.ca.File), nkeyAuth(l.agents["cp-1"]), nats.MaxReconnects(0), nats.Timeout(3*time.Second))
		}, "tls"},
		{"an agent's key, in the clear", func() (*nats.Conn, error) {
			return nats.Connect("nats://"+strings.TrimPrefix(l.url, "tls://"), nkeyAuth(l.agents["cp-1"]), nats.MaxReconnects(0), nats.Timeout(3*time.Second))
		}, "tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := tc.dial()
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !strings.Contains(strings.ToLower(err.Error()), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
	nc, err := l.connect(nkeyAuth(l.agents["cp-1"]))
	if err != nil {
		t.Fatalf("the agent with its key and certificate: %v", err)
	}
	nc.Close()
}

// violation waits for the connection's permissions violation, if any.
func violation(t *testing.T, nc *nats.Conn, errs <-chan error) error {
	t.Helper()
	_ = nc.Flush()
	select {
	case err := <-errs:
		return err
	case <-time.After(2 * time.Second):
		return nil
	}
}

func TestAnAgentMayOnlyTakeItsOwnRequestsAndAnswerThem(t *testing.T) {
	l := newListening(t)
	errs := make(chan error, 16)
	nc, err := l.connect(nkeyAuth(l.agents["cp-1"]), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	own, _ := AgentSubject("prod", "cp-1")
	other, _ := AgentSubject("prod", "cp-2")

	// Whatever it publishes on remediator's subjects, JetStream's API or the buckets is
	// refused and stored nowhere; and it cannot answer a request it was not sent, not even
	// with the server's "no responders", which the service takes on this server at once
	// (Agents.grace).
	before := streamMessages(t, l.q, streamWork)
	for _, subject := range []string{SubjectAnswer, SubjectRun, SubjectAlerts, other, "$JS.API.STREAM.LIST", "$KV." + bucketIncidents + ".x",
		"$KV." + bucketPauses + "._all", l.q.nc.NewRespInbox(), "_INBOX.forged"} {
		if err := nc.Publish(subject, []byte(`{"incident":"x","approve":true,"via":"slack","by":"U1"}`)); err != nil {
			t.Fatal(err)
		}
		if err := violation(t, nc, errs); err == nil || !strings.Contains(err.Error(), "Permissions Violation for Publish") {
			t.Errorf("publish to %s: %v, want a permissions violation", subject, err)
		}
	}
	if after := streamMessages(t, l.q, streamWork); after != before {
		t.Errorf("the work stream went from %d to %d messages", before, after)
	}
	for _, subject := range []string{other, "remediator.>", "_INBOX.>", ">"} {
		if _, err := nc.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		if err := violation(t, nc, errs); err == nil || !strings.Contains(err.Error(), "Permissions Violation for Subscription") {
			t.Errorf("subscribe to %s: %v, want a permissions violation", subject, err)
		}
	}
	if _, err := nc.SubscribeSync(own); err != nil {
		t.Fatal(err)
	}
	if err := violation(t, nc, errs); err != nil {
		t.Errorf("subscribe to its own subject: %v", err)
	}
}

func streamMessages(t *testing.T, q *Queue, stream string) uint64 {
	t.Helper()
	s, err := q.js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// servedAgent runs the agent of node cp-1 over its own TLS connection and counts the actions
// it carries out; each waits for slow, if not nil, to be closed.
func servedAgent(t *testing.T, l *listening, slow <-chan struct{}) *atomic.Int32 {
	t.Helper()
	conn, err := DialAgent(l.url, l.agents["cp-1"], "", TLSFiles{CAFile: l.ca.File, CertFile: l.client.CertFile, KeyFile: l.client.KeyFile}, false)
	if err != nil {
		t.Fatal(err)
	}
	var done atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- conn.Serve(ctx, Serving{Cluster: "prod", Node: "cp-1", ServiceKeys: []string{l.q.PublicKey()}, Log: slog.New(slog.DiscardHandler)},
			func(_ context.Context, act remediator.NodeAction) (remediator.NodeResult, error) {
				if slow != nil && act.Incident != "warmup" {
					<-slow
				}
				done.Add(1)
				return remediator.NodeResult{Output: "did " + string(act.Kind)}, nil
			})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
		conn.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := l.q.Agents().Ask(context.Background(), "prod", "cp-1", remediator.NodeAction{Kind: remediator.ActionInspect, Incident: "warmup"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent does not answer: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	done.Store(0)
	return &done
}

// request sends data as a request to cp-1's subject, with headers, over the service's own
// connection (which may publish there), and returns the agent's reply.
func request(t *testing.T, l *listening, h nats.Header, data []byte) agentReply {
	t.Helper()
	var req agentRequest
	_ = json.Unmarshal(data, &req)
	return requestTo(t, l, h, data, cmp.Or(req.Reply, l.q.nc.NewRespInbox()))
}

// requestTo sends the request for its answer to reply.
func requestTo(t *testing.T, l *listening, h nats.Header, data []byte, inbox string) agentReply {
	t.Helper()
	subject, _ := AgentSubject("prod", "cp-1")
	msg := nats.NewMsg(subject)
	msg.Data, msg.Reply = data, inbox
	for k, v := range h {
		msg.Header[k] = v
	}
	sub, err := l.q.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := l.q.nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	resp, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var reply agentReply
	if err := json.Unmarshal(resp.Data, &reply); err != nil {
		t.Fatal(err)
	}
	if err := verify(resp.Header, resp.Subject, resp.Data, func(pub string) bool { return pub == publicKey(l.agents["cp-1"]) }); err != nil {
		t.Errorf("the agent's reply: %v", err)
	}
	return reply
}

func signedRequest(t *testing.T, key nkeys.KeyPair, subject string, req agentRequest) (nats.Header, []byte) {
	t.Helper()
	data, _ := json.Marshal(req)
	h := nats.Header{}
	signWith(t, key, h, subject, data)
	return h, data
}

func TestAnAgentCarriesOutOnlyWhatTheServiceSignedForItOnce(t *testing.T) {
	l := newListening(t)
	done := servedAgent(t, l, nil)
	subject, _ := AgentSubject("prod", "cp-1")
	stranger, _ := nkeys.CreateUser()
	setFlags := remediator.NodeAction{Kind: remediator.ActionSetFlags, Component: remediator.ComponentAPIServer, Incident: "x",
		Set: map[string]string{"authorization-mode": "AlwaysAllow"}}
	fresh := func() agentRequest {
		return agentRequest{Cluster: "prod", Node: "cp-1", Action: setFlags, Reply: l.q.nc.NewRespInbox(), IssuedAt: time.Now().UTC(), Nonce: fmt.Sprint(time.Now().UnixNano())}
	}

	replayed := fresh()
	h, data := signedRequest(t, l.q.opts.Key, subject, replayed)
	if reply := request(t, l, h, data); reply.Error != "" || done.Load() != 1 {
		t.Fatalf("a signed request: %+v, %d actions; want it carried out", reply, done.Load())
	}
	done.Store(0)
	// The same request, signed, sent for another reply subject (whoever captured it, to
	// answer the service with a refusal of their own making): refused, and not named.
	moved := fresh()
	h2, data2 := signedRequest(t, l.q.opts.Key, subject, moved)
	if reply := requestTo(t, l, h2, data2, l.q.nc.NewRespInbox()); reply.Code != remediator.EFORBIDDEN || reply.Nonce != "" || !strings.Contains(reply.Error, "another reply subject") {
		t.Errorf("moved to another reply subject: %+v", reply)
	}

	for _, tc := range []struct {
		name string
		msg  func() (nats.Header, []byte)
		want string
		// named: the refusal may name the request (it is the service's own, and new)
		named bool
	}{
		{"unsigned, as `nats req` sends it", func() (nats.Header, []byte) {
			data, _ := json.Marshal(fresh())
			return nats.Header{}, data
		}, "unsigned", false},
		{"signed by another key", func() (nats.Header, []byte) { return signedRequest(t, stranger, subject, fresh()) }, "not a trusted key", false},
		{"signed, then altered", func() (nats.Header, []byte) {
			h, data := signedRequest(t, l.q.opts.Key, subject, fresh())
			return h, []byte(strings.Replace(string(data), "set-flags", "stop", 1))
		}, "forged or altered", false},
		{"signed for another node", func() (nats.Header, []byte) {
			req := fresh()
			req.Node = "cp-2"
			return signedRequest(t, l.q.opts.Key, subject, req)
		}, "is for node cp-2", true},
		{"signed for another node's subject", func() (nats.Header, []byte) {
			other, _ := AgentSubject("prod", "cp-2")
			return signedRequest(t, l.q.opts.Key, other, fresh())
		}, "forged or altered", false},
		{"replayed", func() (nats.Header, []byte) { return signedRequest(t, l.q.opts.Key, subject, replayed) }, "a replay", false},
		{"old", func() (nats.Header, []byte) {
			req := fresh()
			req.IssuedAt = time.Now().Add(-10 * time.Minute)
			return signedRequest(t, l.q.opts.Key, subject, req)
		}, "a replay, or clocks", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, data := tc.msg()
			reply := request(t, l, h, data)
			if reply.Code != remediator.EFORBIDDEN || !strings.Contains(reply.Error, tc.want) {
				t.Errorf("reply %s: %q, want forbidden: %q", reply.Code, reply.Error, tc.want)
			}
			var req agentRequest
			_ = json.Unmarshal(data, &req)
			if named := reply.Nonce != "" && reply.Nonce == req.Nonce; named != tc.named {
				t.Errorf("the refusal names the request: %v, want %v", named, tc.named)
			}
			if n := done.Load(); n != 0 {
				t.Errorf("the agent carried out %d actions", n)
			}
		})
	}
}

func TestOnlyTheAgentsSignedReplyIsTakenAsItsAnswer(t *testing.T) {
	l := newListening(t)
	subject, _ := AgentSubject("prod", "cp-1")
	// An impostor subscribed beside the agent (through a NATS account that let it) answers
	// first, unsigned and then signed by another key; the agent answers after it.
	stranger, _ := nkeys.CreateUser()
	lied := make(chan struct{})
	done := servedAgent(t, l, lied)
	sub, err := l.q.nc.Subscribe(subject, func(m *nats.Msg) {
		defer close(lied)
		// "Nobody listens", as the server would say it; an unsigned lie; a lie signed by
		// another key.
		gone := nats.NewMsg(m.Reply)
		gone.Header.Set("Status", "503")
		_ = l.q.nc.PublishMsg(gone)
		lie, _ := json.Marshal(agentReply{Cluster: "prod", Node: "cp-1", Result: remediator.NodeResult{Output: "all healthy"}})
		_ = m.Respond(lie)
		out := nats.NewMsg(m.Reply)
		out.Data = lie
		signWith(t, stranger, out.Header, m.Reply, lie)
		_ = l.q.nc.PublishMsg(out)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	// An impostor needs a NATS server remediator did not configure: give its grace.
	l.q.agents.grace = noResponderGrace
	res, err := l.q.Agents().Ask(context.Background(), "prod", "cp-1", remediator.NodeAction{Kind: remediator.ActionStop, Incident: "x"})
	if err != nil || res.Output != "did stop" || done.Load() != 1 {
		t.Errorf("answer %q, %v (%d actions); want the agent's own", res.Output, err, done.Load())
	}
}

func TestAnAgentThatDoesNotAnswerIsNamed(t *testing.T) {
	l := newListening(t)
	_, err := l.q.Agents().Ask(context.Background(), "prod", "cp-2", remediator.NodeAction{Kind: remediator.ActionInspect, Incident: "x"})
	if remediator.ErrorCode(err) != remediator.EUNAVAILABLE || !strings.Contains(err.Error(), "no agent answers for node cp-2") {
		t.Errorf("error %v, want no agent answers for node cp-2", err)
	}
}

func TestAForgedMessageOnAStreamReachesNoHandler(t *testing.T) {
	q := openQueue(t, Options{})
	// Whoever could publish there (a NATS user with too wide permissions) but does not hold
	// the service's key: an approval, unsigned, and one signed by another key.
	stranger, _ := nkeys.CreateUser()
	forgedByKey := nats.NewMsg(SubjectAnswer)
	forgedByKey.Data = []byte(`{"incident":"i-2","approve":true}`)
	signWith(t, stranger, forgedByKey.Header, SubjectAnswer, forgedByKey.Data)
	ctx := context.Background()
	if _, err := q.js.Publish(ctx, SubjectAnswer, []byte(`{"incident":"i-1","approve":true}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := q.js.PublishMsg(ctx, forgedByKey); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Publish(ctx, SubjectAnswer, []byte(`{"incident":"i-3","approve":true}`), "signed"); err != nil {
		t.Fatal(err)
	}
	handled, forged := consumeWork(t, q, 3)
	if len(handled) != 1 || !strings.Contains(handled[0], "i-3") {
		t.Errorf("handled %q, want only the signed answer", handled)
	}
	if len(forged) != 2 || !strings.Contains(forged[0], "unsigned") || !strings.Contains(forged[1], "not a trusted key") {
		t.Errorf("forged %q, want the unsigned one and the one signed by another key", forged)
	}
	// Given up, not retried: the work stream holds nothing more.
	if n := streamMessages(t, q, streamWork); n != 0 {
		t.Errorf("the work stream still holds %d messages", n)
	}
}

func TestRedactURLHidesCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"nats://alice:s3cret@nats-1:4222,nats://bob:hunter2@nats-2:4222": "nats://xxxxx@nats-1:4222,nats://xxxxx@nats-2:4222",
		"dial tls://tok3n@nats:4222: connection refused":                 "dial tls://xxxxx@nats:4222: connection refused",
		"nats://nats:4222":          "nats://nats:4222",
		"nats://u:p@ss@nats:4222/x": "nats://xxxxx@nats:4222/x",
		"nats://u:pa,ss@nats-1:4222,nats://v:w@nats-2:4222 failed": "nats://xxxxx@nats-1:4222,nats://xxxxx@nats-2:4222 failed",
		"see https://example.com/a@b":                              "see https://example.com/a@b",
	} {
		if got := remediator.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	_, err := Open(context.Background(), Options{URL: "nats://alice:s3cret@127.0.0.1:1", Insecure: true})
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "xxxxx@127.0.0.1:1") {
		t.Errorf("error %v, want the URL without its password", err)
	}
}

// signWith signs as sign does, with any key.
func signWith(t testing.TB, key nkeys.KeyPair, h nats.Header, subject string, data []byte) {
	t.Helper()
	s, err := newSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	s.sign(h, subject, data)
}

// The gate's memory: a request from before the agent started is sent back to be asked again
// (it may replay one carried out before a restart), and nonces are forgotten only once their
// requests are too old to be taken anyway.
func TestTheGateForgetsOnlyWhatItWouldRefuseAnyway(t *testing.T) {
	key, _ := nkeys.CreateUser()
	s, _ := newSigner(key)
	subject, _ := AgentSubject("prod", "cp-1")
	start := time.Now()
	g := &gate{cluster: "prod", node: "cp-1", subject: subject, services: []string{s.pub}, started: start, seen: map[string]time.Time{}}
	msg := func(issued time.Time, nonce string) *nats.Msg {
		req := agentRequest{Cluster: "prod", Node: "cp-1", Reply: "_INBOX.x", IssuedAt: issued, Nonce: nonce, Action: remediator.NodeAction{Kind: remediator.ActionInspect}}
		m := nats.NewMsg(subject)
		m.Reply = "_INBOX.x"
		m.Data, _ = json.Marshal(req)
		s.sign(m.Header, subject, m.Data)
		return m
	}
	if _, named, err := g.admit(msg(start.Add(-time.Second), "before"), start); remediator.ErrorCode(err) != remediator.EUNAVAILABLE || !named {
		t.Errorf("a request from before the start: %v (named %v), want unavailable: ask again", err, named)
	}
	if _, _, err := g.admit(msg(start.Add(time.Second), "n1"), start.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// Long after, the nonce is forgotten, and the same request is refused for its age.
	later := start.Add(10 * requestMaxAge)
	if _, _, err := g.admit(msg(later, "n2"), later); err != nil || len(g.seen) != 1 {
		t.Fatalf("a fresh request later: %v, %d nonces remembered, want 1", err, len(g.seen))
	}
	if _, _, err := g.admit(msg(start.Add(time.Second), "n1"), later); remediator.ErrorCode(err) != remediator.EFORBIDDEN || !strings.Contains(err.Error(), "a replay, or clocks") {
		t.Errorf("the old request again: %v, want refused for its age", err)
	}
}

// Work queued before a key rotation, or before this version signed anything, is still the
// service's: signed by a previous key it names, or unsigned and stored before the queue first
// signed. An unsigned message stored since is refused.
func TestQueuedWorkSurvivesARotationAndTheUpgradeToSignatures(t *testing.T) {
	dir := t.TempDir()
	old, _ := nkeys.CreateUser()
	q1 := openQueue(t, Options{StoreDir: dir, Key: old})
	ctx := context.Background()
	if _, err := q1.Publish(ctx, SubjectRun, []byte("signed by the old key"), "old"); err != nil {
		t.Fatal(err)
	}
	// A message the version before signatures left behind: stored before signed_since.
	meta, err := q1.js.KeyValue(ctx, bucketMeta)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q1.js.Publish(ctx, SubjectRun, []byte("unsigned, from before")); err != nil {
		t.Fatal(err)
	}
	if _, err := meta.Put(ctx, keySignedSince, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		t.Fatal(err)
	}
	if _, err := q1.js.Publish(ctx, SubjectRun, []byte("unsigned, from since")); err != nil {
		t.Fatal(err)
	}
	q1.Close()

	current, _ := nkeys.CreateUser()
	q2 := openQueue(t, Options{StoreDir: dir, Key: current, PreviousKeys: []string{publicKey(old)}})
	handled, forged := consumeWork(t, q2, 3)
	for i := range forged {
		forged[i], _, _ = strings.Cut(forged[i], ": ")
	}
	if strings.Join(handled, ";") != "signed by the old key;unsigned, from before" || strings.Join(forged, ";") != "unsigned, from since" {
		t.Errorf("handled %q, refused %q", handled, forged)
	}
}

// consumeWork runs the executor's consumer until it has seen n messages (or ten seconds have
// passed), and returns the bodies it handled and those it refused as forged, with why.
func consumeWork(t *testing.T, q *Queue, n int) (handled, forged []string) {
	t.Helper()
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = q.Consume(ctx, Executor, 1, time.Second, func(_ context.Context, d Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, string(d.Data))
			return nil
		}, func(_ context.Context, d Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			forged = append(forged, fmt.Sprintf("%s: %v", d.Data, d.Forged))
			return nil
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		seen := len(handled) + len(forged)
		mu.Unlock()
		if seen >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	return handled, forged
}

// The doors this queue added are shut too: a forged alert batch in among signed ones never
// reaches the correlator's batch handler, and a forged wait is never given back to the
// subject it names (where it would come back signed by the service).
func TestForgedBatchesAndWaitsReachNoHandler(t *testing.T) {
	q := openQueue(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := q.js.Publish(ctx, SubjectAlerts, []byte(`{"id":"forged"}`)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := q.Publish(ctx, SubjectAlerts, []byte(fmt.Sprintf(`{"id":"signed-%d"}`, i)), fmt.Sprint("s", i)); err != nil {
			t.Fatal(err)
		}
	}
	forgedWait, _ := json.Marshal(wait{Subject: SubjectAnswer, Data: []byte(`{"incident":"i-1","approve":true}`), Due: time.Now()})
	if _, err := q.js.Publish(ctx, subjectWaits+"."+SubjectAnswer, forgedWait); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var handled, refused []string
	go func() {
		_ = q.ConsumeBatches(ctx, Correlator, 10, time.Second, func(ctx context.Context, ds []Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			for _, d := range ds {
				handled = append(handled, string(d.Data))
			}
			return nil
		}, func(ctx context.Context, d Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			refused = append(refused, string(d.Data))
			return nil
		})
	}()
	go func() { _ = q.RunWaits(ctx, time.Second) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		done := len(handled)+len(refused) == 4
		mu.Unlock()
		if done && streamMessages(t, q, streamWaits) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handled %q, refused %q; the waits stream holds %d", handled, refused, streamMessages(t, q, streamWaits))
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != 3 || slices.ContainsFunc(handled, func(h string) bool { return strings.Contains(h, "forged") }) || len(refused) != 1 {
		t.Errorf("handled %q, refused %q: want the 3 signed batches handled and the forged one refused", handled, refused)
	}
	// The forged wait was given up, not given back: no answer reached the work stream.
	if n := streamMessages(t, q, streamWork); n != 0 {
		t.Errorf("the work stream holds %d messages: a forged wait was given back as the service's own", n)
	}
}
