package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/remediator/remediator"
)

// subjectAgents prefixes the subject of each node's agent: remediator.agent.<cluster>.<node>.
const subjectAgents = "remediator.agent"

// agentGrace is how much longer than the action's own timeout a request waits for the reply.
const agentGrace = 30 * time.Second

// defaultActionTimeout is the request timeout of an action with none of its own.
const defaultActionTimeout = 2 * time.Minute

// Agents sends node-local actions to the agents of control-plane nodes, and serves them on a
// node. Requests are plain NATS request-reply, not JetStream: an action is only useful while
// the step that asked for it waits, and a step whose request is lost asks again (every action
// is idempotent).
type Agents struct {
	nc *nats.Conn
}

// Agents returns the queue's connection for node agents.
func (q *Queue) Agents() *Agents { return &Agents{nc: q.nc} }

// DialAgents connects a node agent to a NATS server.
func DialAgents(url, credsFile string) (*Agents, error) {
	opts := []nats.Option{nats.Name("remediator-agent"), nats.MaxReconnects(-1)}
	if credsFile != "" {
		opts = append(opts, nats.UserCredentials(credsFile))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, remediator.Errorf(remediator.EUNAVAILABLE, "queue: connect to NATS at %s: %w", url, err)
	}
	return &Agents{nc: nc}, nil
}

// Close closes a connection made by DialAgents.
func (a *Agents) Close() { a.nc.Close() }

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

// agentReply is an agent's answer: a result, or an error with its code.
type agentReply struct {
	Result remediator.NodeResult `json:"result"`
	Code   string                `json:"code,omitempty"`
	Error  string                `json:"error,omitempty"`
}

// Ask sends an action to a node's agent and waits for its result.
func (a *Agents) Ask(ctx context.Context, cluster, node string, act remediator.NodeAction) (remediator.NodeResult, error) {
	subject, err := AgentSubject(cluster, node)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	data, err := json.Marshal(act)
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
	msg, err := a.nc.RequestWithContext(ctx, subject, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return remediator.NodeResult{}, remediator.Errorf(remediator.EUNAVAILABLE,
			"no agent answers for node %s of cluster %s: is `remediator agent --node %s` running there?", node, cluster, node)
	case err != nil:
		return remediator.NodeResult{}, remediator.Errorf(remediator.EUNAVAILABLE, "agent of node %s: %s: %w", node, act.Kind, err)
	}
	var reply agentReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EINTERNAL, "agent of node %s: unreadable reply: %w", node, err)
	}
	if reply.Error != "" {
		return reply.Result, remediator.Errorf(reply.Code, "node %s: %s", node, reply.Error)
	}
	return reply.Result, nil
}

// Serve answers the actions sent to a node's agent with do, one at a time, until ctx ends.
func (a *Agents) Serve(ctx context.Context, cluster, node string, do func(context.Context, remediator.NodeAction) (remediator.NodeResult, error), log *slog.Logger) error {
	subject, err := AgentSubject(cluster, node)
	if err != nil {
		return err
	}
	msgs := make(chan *nats.Msg, 64)
	sub, err := a.nc.ChanSubscribe(subject, msgs)
	if err != nil {
		return remediator.Errorf(remediator.EUNAVAILABLE, "queue: subscribe to %s: %w", subject, err)
	}
	defer sub.Unsubscribe()
	if err := a.nc.Flush(); err != nil {
		return remediator.Errorf(remediator.EUNAVAILABLE, "queue: subscribe to %s: %w", subject, err)
	}
	log.Info("agent listening", "subject", subject)
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-msgs:
			var reply agentReply
			var act remediator.NodeAction
			if err := json.Unmarshal(msg.Data, &act); err != nil {
				reply.Code, reply.Error = remediator.EINVALID, fmt.Sprintf("not a node action: %v", err)
			} else {
				res, err := do(ctx, act)
				reply.Result = res
				if err != nil {
					reply.Code, reply.Error = remediator.ErrorCode(err), err.Error()
				}
			}
			data, _ := json.Marshal(reply)
			if err := msg.Respond(data); err != nil {
				log.Warn("agent reply lost", "action", act.Kind, "err", err)
			}
		}
	}
}
