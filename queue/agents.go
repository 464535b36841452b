package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/remediator/remediator"
)

// subjectAgents prefixes the subject of each node's agent: remediator.agent.<cluster>.<node>.
const subjectAgents = "remediator.agent"

// agentGrace is how much longer than the action's own timeout a request waits for the reply.
const agentGrace = 30 * time.Second

// defaultActionTimeout is the request timeout of an action with none of its own.
const defaultActionTimeout = 2 * time.Minute

// Agents sends node-local actions to the agents of control-plane nodes. Requests are plain
// NATS request-reply, not JetStream: an action is only useful while the step that asked for it
// waits, and a step whose request is lost asks again (every action is idempotent).
//
// Every request is signed by the service's key, bound to its node, and carries its time and a
// nonce, so that an agent carries out only what the service asked, once. Every reply is signed
// by the agent's key and names the request it answers, so that nobody else can answer for it.
type Agents struct {
	nc  *nats.Conn
	key *signer
	// keys maps "<cluster>/<node>" to the agent's public key.
	keys map[string]string
	// grace is how long a signed reply may still come after "no responders" (see
	// noResponderGrace); zero where nobody else can forge that status.
	grace time.Duration
}

// Agents returns the queue's client of the node agents.
func (q *Queue) Agents() *Agents { return q.agents }

// answersFor says whether pub may answer for the agent of a node: its own key, or this
// service's (an agent served by this very process, which signs with it).
func (a *Agents) answersFor(cluster, node string) func(pub string) bool {
	want := a.keys[cluster+"/"+node]
	return func(pub string) bool { return pub == a.key.pub || (want != "" && pub == want) }
}

// AgentSubject is the subject the agent of a node of a cluster listens on. Node names are
// often FQDNs (ip-10-0-0-11.ec2.internal), and a dot separates subject tokens: dots become
// tildes, which node names never hold, so no two nodes share a subject.
func AgentSubject(cluster, node string) (string, error) {
	for _, name := range []string{cluster, node} {
		if name == "" || strings.ContainsAny(name, "*>~ \t\r\n") || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
			return "", remediator.Errorf(remediator.EINVALID, "queue: %q cannot name an agent: no wildcards, spaces or empty dot-separated parts", name)
		}
	}
	if strings.Contains(cluster, ".") {
		return "", remediator.Errorf(remediator.EINVALID, "queue: cluster %q cannot name an agent: no dots", cluster)
	}
	return subjectAgents + "." + cluster + "." + strings.ReplaceAll(node, ".", "~"), nil
}

// agentRequest is what the service asks of an agent, signed: the action, the node it is for,
// where the answer goes, when it was asked and a nonce the agent refuses to see twice.
type agentRequest struct {
	Cluster  string                `json:"cluster"`
	Node     string                `json:"node"`
	Action   remediator.NodeAction `json:"action"`
	Reply    string                `json:"reply"`
	IssuedAt time.Time             `json:"issued_at"`
	Nonce    string                `json:"nonce"`
}

// agentReply is an agent's answer to the request with its nonce, signed: a result, or an
// error with its code.
type agentReply struct {
	Cluster string                `json:"cluster"`
	Node    string                `json:"node"`
	Nonce   string                `json:"nonce"`
	Result  remediator.NodeResult `json:"result"`
	Code    string                `json:"code,omitempty"`
	Error   string                `json:"error,omitempty"`
}

// noResponderGrace is how long, on a NATS server remediator did not configure, after it said
// no agent listens, a signed reply may still come before the agent counts as absent: a "no
// responders" forged by whoever that server lets publish to the inbox must not hide an agent
// that is there.
const noResponderGrace = 2 * time.Second

// requestMaxAge is how far from an agent's clock a request's time may be: past it (a replay,
// or a clock to fix), the agent refuses it. Nonces are remembered twice as long.
const requestMaxAge = 2 * time.Minute

// Ask sends an action to a node's agent and waits for its result. Replies that are not the
// agent's, signed, for this request, are ignored; if no other comes, the error says why they
// were refused.
func (a *Agents) Ask(ctx context.Context, cluster, node string, act remediator.NodeAction) (remediator.NodeResult, error) {
	subject, err := AgentSubject(cluster, node)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return remediator.NodeResult{}, fmt.Errorf("queue: %w", err)
	}
	req := agentRequest{Cluster: cluster, Node: node, Action: act, Reply: a.nc.NewRespInbox(), IssuedAt: time.Now().UTC(), Nonce: hex.EncodeToString(nonce)}
	data, err := json.Marshal(req)
	if err != nil {
		return remediator.NodeResult{}, fmt.Errorf("queue: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		timeout := time.Duration(act.Timeout)
		if timeout == 0 {
			timeout = defaultActionTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout+agentGrace)
		defer cancel()
	}
	msg := nats.NewMsg(subject)
	msg.Data, msg.Reply = data, req.Reply
	a.key.sign(msg.Header, subject, data)
	sub, err := a.nc.SubscribeSync(msg.Reply)
	if err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EUNAVAILABLE, "agent of node %s: %s: %w", node, act.Kind, err)
	}
	defer sub.Unsubscribe()
	if err := a.nc.PublishMsg(msg); err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EUNAVAILABLE, "agent of node %s: %s: %w", node, act.Kind, err)
	}
	answersFor := a.answersFor(cluster, node)
	var (
		refused    []string // the first few reasons, for the error
		nRefused   int
		noResponse bool
		waitCtx    = ctx
	)
	refuse := func(why string) {
		if nRefused++; len(refused) < 3 {
			refused = append(refused, why)
		}
	}
	for {
		m, err := sub.NextMsgWithContext(waitCtx)
		if errors.Is(err, nats.ErrNoResponders) || (err == nil && len(m.Data) == 0 && m.Header.Get("Status") == "503") {
			// The server says nobody listens; anyone who may publish to the inbox could
			// say so too: a signed reply may still come, for a little while.
			if !noResponse {
				noResponse = true
				var cancel context.CancelFunc
				waitCtx, cancel = context.WithTimeout(ctx, a.grace)
				defer cancel()
			}
			continue
		}
		if err != nil {
			if noResponse {
				return remediator.NodeResult{}, remediator.Errorf(remediator.EUNAVAILABLE,
					"no agent answers for node %s of cluster %s: is `remediator agent --node %s` running there?", node, cluster, node)
			}
			why := ""
			if nRefused > 0 {
				why = fmt.Sprintf(" (refused %d reply(ies) that were not its own: %s)", nRefused, strings.Join(refused, "; "))
			}
			return remediator.NodeResult{}, remediator.Errorf(remediator.EUNAVAILABLE, "agent of node %s: %s: no answer%s: %w", node, act.Kind, why, err)
		}
		if err := verify(m.Header, msg.Reply, m.Data, answersFor); err != nil {
			refuse(err.Error())
			continue
		}
		var reply agentReply
		if err := json.Unmarshal(m.Data, &reply); err != nil {
			refuse(fmt.Sprintf("unreadable reply: %v", err))
			continue
		}
		if reply.Nonce != req.Nonce || reply.Cluster != cluster || reply.Node != node {
			refuse("a signed reply to another request")
			continue
		}
		if reply.Error != "" {
			return reply.Result, remediator.Errorf(reply.Code, "node %s: %s", node, reply.Error)
		}
		return reply.Result, nil
	}
}

// AgentConn is a node agent's connection to the queue.
type AgentConn struct {
	nc  *nats.Conn
	key *signer
	// local says the agent serves in the service's own process, on its connection and key.
	local bool
}

// DialAgent connects a node agent to NATS as the nkey user key (or with the user JWT of
// credsFile, whose seed key is), which also signs its replies. tlsFiles give the CA of the
// server's certificate and the agent's client certificate; insecure allows a server without
// TLS, or one that asks for no credentials.
func DialAgent(url string, key nkeys.KeyPair, credsFile string, tlsFiles TLSFiles, insecure bool) (*AgentConn, error) {
	if key == nil {
		return nil, remediator.Errorf(remediator.EINVALID, "queue: an agent needs its own nkey (nats.nkey_file): it signs its replies")
	}
	opts := []nats.Option{nats.Name("remediator-agent"), nats.MaxReconnects(-1)}
	if credsFile != "" {
		opts = append(opts, nats.UserCredentials(credsFile))
	} else {
		opts = append(opts, nkeyAuth(key))
	}
	tlsOpts, err := clientTLS(tlsFiles, url, insecure)
	if err != nil {
		return nil, err
	}
	s, err := newSigner(key)
	if err != nil {
		return nil, err
	}
	opts = append(opts, tlsOpts...)
	nc, err := nats.Connect(url, opts...)
	if errors.Is(err, nats.ErrNkeysNotSupported) && insecure {
		nc, err = nats.Connect(url, append(opts, withoutNkey)...)
	}
	if err != nil {
		return nil, remediator.Errorf(remediator.EUNAVAILABLE, "queue: connect to NATS at %s: %s", remediator.RedactURL(url), remediator.RedactURL(err.Error()))
	}
	return &AgentConn{nc: nc, key: s}, nil
}

// AgentConn returns a connection for an agent that serves in this process (a one-node setup,
// or a test): on the queue's own connection, it obeys and signs with the service's key, which
// nobody outside the process holds.
func (q *Queue) AgentConn() *AgentConn { return &AgentConn{nc: q.nc, key: q.signer, local: true} }

// Close closes a connection made by DialAgent.
func (c *AgentConn) Close() {
	if !c.local {
		c.nc.Close()
	}
}

// PublicKey is the public nkey that signs the agent's replies.
func (c *AgentConn) PublicKey() string { return c.key.pub }

// Serving says which node an agent serves, and whom it obeys.
type Serving struct {
	Cluster, Node string
	// ServiceKeys are the public keys whose signed requests the agent carries out; for an
	// agent in the service's own process, the service's key when empty.
	ServiceKeys []string
	Log         *slog.Logger
}

// Serve answers the actions sent to a node's agent with do, one at a time, until ctx ends.
// It carries out only requests signed by a service key, for this node, recent, and not seen
// before; any other is refused (EFORBIDDEN), logged, and changes nothing.
func (c *AgentConn) Serve(ctx context.Context, s Serving, do func(context.Context, remediator.NodeAction) (remediator.NodeResult, error)) error {
	subject, err := AgentSubject(s.Cluster, s.Node)
	if err != nil {
		return err
	}
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	services := slices.Clone(s.ServiceKeys)
	if c.local && len(services) == 0 {
		services = []string{c.key.pub}
	}
	if len(services) == 0 {
		return remediator.Errorf(remediator.EINVALID, "agent: no service key to obey: set agent.service_keys to the public key of serve's nats.nkey_file")
	}
	g := &gate{cluster: s.Cluster, node: s.Node, subject: subject, services: services, started: time.Now(), seen: map[string]time.Time{}}
	// Requests wait while an action runs: each is judged by when it arrived.
	type arrival struct {
		msg *nats.Msg
		at  time.Time
	}
	msgs := make(chan arrival, 64)
	sub, err := c.nc.Subscribe(subject, func(m *nats.Msg) {
		select {
		case msgs <- arrival{m, time.Now()}:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return remediator.Errorf(remediator.EUNAVAILABLE, "queue: subscribe to %s: %w", subject, err)
	}
	defer sub.Unsubscribe()
	if err := c.nc.Flush(); err != nil {
		return remediator.Errorf(remediator.EUNAVAILABLE, "queue: subscribe to %s: %w", subject, err)
	}
	if err := c.nc.LastError(); err != nil {
		return remediator.Errorf(remediator.EFORBIDDEN, "queue: subscribe to %s: %w", subject, err)
	}
	log.Info("agent listening", "subject", subject, "service_keys", services)
	for {
		select {
		case <-ctx.Done():
			return nil
		case in := <-msgs:
			msg := in.msg
			reply := agentReply{Cluster: s.Cluster, Node: s.Node}
			req, answerable, err := g.admit(msg, in.at)
			if answerable {
				// Only a request the service signed, and not a replay of one, gets an answer
				// that names it: a refusal of anything else must not pass for its answer.
				reply.Nonce = req.Nonce
			}
			if err != nil {
				log.Warn("agent refused a request", "err", err, "action", req.Action.Kind, "incident", req.Action.Incident)
				reply.Code, reply.Error = remediator.ErrorCode(err), err.Error()
			} else {
				res, err := do(ctx, req.Action)
				reply.Result = res
				if err != nil {
					reply.Code, reply.Error = remediator.ErrorCode(err), err.Error()
				}
			}
			if msg.Reply == "" {
				continue
			}
			data, _ := json.Marshal(reply)
			out := nats.NewMsg(msg.Reply)
			out.Data = data
			c.key.sign(out.Header, msg.Reply, data)
			if err := c.nc.PublishMsg(out); err != nil {
				log.Warn("agent reply lost", "action", req.Action.Kind, "err", err)
			}
		}
	}
}

// gate decides whether an agent carries out a request.
type gate struct {
	cluster, node, subject string
	services               []string
	started                time.Time
	// seen holds the nonces of the requests carried out, by when each was issued.
	seen map[string]time.Time
}

// admit returns the request a message carries if the agent may carry it out: signed by a
// service key over this node's subject, for this node and the reply subject it came with,
// issued within requestMaxAge of when it arrived and after the agent started (what it saw
// before, it no longer remembers), and not seen before. answerable says whether a refusal
// may name the request: it is the service's own, and no replay.
func (g *gate) admit(msg *nats.Msg, arrived time.Time) (req agentRequest, answerable bool, err error) {
	jsonErr := json.Unmarshal(msg.Data, &req)
	if err := verify(msg.Header, g.subject, msg.Data, func(pub string) bool { return slices.Contains(g.services, pub) }); err != nil {
		return req, false, remediator.Errorf(remediator.EFORBIDDEN, "not carried out: %w", err)
	}
	switch age := arrived.Sub(req.IssuedAt); {
	case jsonErr != nil:
		return req, false, remediator.Errorf(remediator.EINVALID, "not a node action: %w", jsonErr)
	case req.Reply != msg.Reply:
		return req, false, remediator.Errorf(remediator.EFORBIDDEN, "not carried out: the request came for another reply subject than it was signed for")
	case !g.seen[req.Nonce].IsZero():
		return req, false, remediator.Errorf(remediator.EFORBIDDEN, "not carried out: request %s was carried out already: a replay", req.Nonce)
	case req.Cluster != g.cluster || req.Node != g.node:
		return req, true, remediator.Errorf(remediator.EFORBIDDEN, "not carried out: the request is for node %s of cluster %s, and this is %s of %s", req.Node, req.Cluster, g.node, g.cluster)
	case age > requestMaxAge || age < -requestMaxAge:
		return req, true, remediator.Errorf(remediator.EFORBIDDEN, "not carried out: the request was issued at %s, %s from this node's clock when it arrived (at most %s): a replay, or clocks to set right", req.IssuedAt.Format(time.RFC3339), age.Round(time.Second), requestMaxAge)
	case req.Nonce == "":
		return req, false, remediator.Errorf(remediator.EFORBIDDEN, "not carried out: the request has no nonce")
	case req.IssuedAt.Before(g.started):
		// It may be new to this agent and still be a replay of one carried out before it
		// restarted: the service asks again, with a new request.
		return req, true, remediator.Errorf(remediator.EUNAVAILABLE, "not carried out: the request was issued before this agent started; ask again")
	}
	for n, at := range g.seen {
		if arrived.Sub(at) > 2*requestMaxAge {
			delete(g.seen, n)
		}
	}
	g.seen[req.Nonce] = req.IssuedAt
	return req, true, nil
}
