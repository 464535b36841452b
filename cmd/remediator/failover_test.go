package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/internal/natstest"
	"github.com/remediator/remediator/queue"
)

// maxTakeover is how soon after a replica's death the other must carry its run on.
const maxTakeover = 10 * time.Second

// TestFailoverAReplicaAndANATSNodeKilledMidRemediation runs two replicas of serve as processes
// on a three-node NATS cluster (R3 streams and buckets), kills the replica that runs a NOSPACE
// recovery between two members' defragmentations, and with it the NATS node that leads the
// executor's consumer and everything else the takeover goes through: the other replica
// resumes the run within maxTakeover, the one incident ends succeeded, and each member was
// defragmented once, the leader last.
func TestFailoverAReplicaAndANATSNodeKilledMidRemediation(t *testing.T) {
	began := time.Now()
	bin := debugLogging(t, buildBinary(t))
	etcd, cl := nospaceCluster(t)
	dir := t.TempDir()

	nc, seed := natsForReplicas(t, dir)

	const pause = 3 * time.Second
	policies := writePolicy(t, "auto", map[string]string{"pause_between_members": pause.String()})
	names := []string{"a", "b"}
	replicas := map[string]*process{}
	for _, name := range names {
		path := replicaConfig(t, dir, name, nc, seed, policies, etcd)
		replicas[name] = startProcess(t, bin, path, filepath.Join(dir, name+".log"))
	}
	t.Logf("cluster, NATS and both replicas up in %s", time.Since(began).Round(time.Millisecond))

	victim := natsVictim(t, nc, seed)
	if code, body := post(t, replicas["a"].addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, body)
	}
	// Mid-remediation: one member defragmented (its progress saved), the pause before the
	// next one under way.
	inc := pollIncident(t, replicas["a"].addr, 2*time.Minute, func(inc remediator.Incident) bool {
		return len(inc.Steps) == 6 && strings.Contains(string(inc.Steps[3].Progress), `"name"`)
	})
	if inc.Steps[3].Name != "defragment" {
		t.Fatalf("step 3 is %s, want defragment", inc.Steps[3].Name)
	}
	runner := ""
	for _, name := range names {
		if len(stepStarts(t, replicas[name].log, inc.ID, "defragment")) > 0 {
			if runner != "" {
				t.Fatalf("both replicas started the defragment step before any kill")
			}
			runner = name
		}
	}
	if runner == "" {
		t.Fatal("neither replica logged that it started the defragment step")
	}
	survivor := map[string]string{"a": "b", "b": "a"}[runner]
	t.Logf("leaders before the kill of n%d: %s", victim, natsLeaders(t, nc, seed))

	killedAt := time.Now()
	if err := replicas[runner].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = replicas[runner].cmd.Wait()
	nc.Kill(victim)
	t.Logf("killed replica %s (it ran the defragment step) and NATS node n%d at %s, %s after the start",
		runner, victim, killedAt.Format("15:04:05.000"), killedAt.Sub(began).Round(time.Millisecond))
	// The kill must fall in the pause after the first member: a defragmentation under way
	// would keep its fence, and the takeover, until its deadline minutes later.
	var progress struct {
		Done []struct {
			Name string    `json:"name"`
			At   time.Time `json:"at"`
		} `json:"done"`
	}
	if err := json.Unmarshal(inc.Steps[3].Progress, &progress); err != nil || len(progress.Done) != 1 {
		t.Fatalf("defragment progress %s (%v), want one member done", inc.Steps[3].Progress, err)
	}
	if into := killedAt.Sub(progress.Done[0].At); into >= pause {
		t.Fatalf("killed %s after member %s was done, past the %s pause before the next", into, progress.Done[0].Name, pause)
	} else {
		t.Logf("killed %s into the %s pause after member %s", into.Round(time.Millisecond), pause, progress.Done[0].Name)
	}
	defragged := 0
	for _, ts := range defragTimes(t, etcd) {
		defragged += len(ts)
	}
	if defragged != 1 {
		t.Fatalf("%d members defragmented when replica %s was killed, want 1 (mid-remediation)", defragged, runner)
	}

	addr := replicas[survivor].addr
	inc = pollIncident(t, addr, time.Minute, terminal)
	t.Logf("incident %s ended %s, %s after the kill", inc.ID, inc.State, time.Since(killedAt).Round(time.Millisecond))
	if inc.State != remediator.StateSucceeded {
		t.Fatalf("incident after the failover: %s (%s), want succeeded\ntimeline:\n%s", inc.State, inc.Reason, timeline(inc))
	}
	all, next, err := listIncidents(addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || next != "" {
		t.Fatalf("%d incidents (next_cursor %q), want exactly one: %s", len(all), next, describe(all))
	}

	// The takeover: the first sign after the kill that the run goes on, from the incident's
	// own timeline.
	var resumed *remediator.Event
	for i, e := range inc.Timeline {
		if e.At.After(killedAt) && (e.Kind == remediator.EventStepStarted || e.Kind == remediator.EventStepRetry) && stepIndex(inc, e.Step) >= 3 {
			resumed = &inc.Timeline[i]
			break
		}
	}
	if resumed == nil {
		t.Fatalf("no step started or retried after the kill:\n%s", timeline(inc))
	}
	takeover := resumed.At.Sub(killedAt)
	t.Logf("takeover: %s (replica %s: %s %s %q at %s; killed at %s)", takeover.Round(time.Millisecond), survivor,
		resumed.Kind, resumed.Step, resumed.Message, resumed.At.Format("15:04:05.000"), killedAt.Format("15:04:05.000"))
	// What the survivor did between the kill and the resume: where the takeover's time went.
	t.Logf("replica %s's log from the kill to the resume:\n%s", survivor, logBetween(t, replicas[survivor].log, killedAt, resumed.At))
	t.Logf("NATS elections from the kill to the resume:\n%s", natsElections(dir, killedAt, resumed.At))
	if takeover > maxTakeover {
		t.Errorf("takeover: %s after the kill, want within %s\ntimeline:\n%s", takeover.Round(time.Millisecond), maxTakeover, timeline(inc))
	}
	if starts := stepStarts(t, replicas[survivor].log, inc.ID, "defragment"); len(starts) == 0 {
		t.Errorf("replica %s did not log that it resumed the defragment step", survivor)
	}

	if a := alarmList(t, cl); a != "" {
		t.Errorf("alarms: %s, want none", a)
	}
	if err := probeWrite(cl); err != nil {
		t.Errorf("a write after the remediation: %v", err)
	}
	assertDefraggedOnceLeaderLast(t, etcd, leaderOf(t, inc.Before))
	// The steps done before the kill are not run again; the defragment step is attempted again
	// (more than once if an attempt failed on NATS before it touched etcd, such as writing its
	// fence during an election: etcd's logs above say whether a member was defragmented twice).
	var attempts []string
	for _, s := range inc.Steps {
		attempts = append(attempts, fmt.Sprintf("%s %d", s.Name, s.Attempts))
		before := stepIndex(inc, s.Name) < 3
		switch {
		case s.State != remediator.StepSucceeded:
			t.Errorf("step %s: %s after %d attempts, want succeeded", s.Name, s.State, s.Attempts)
		case before && s.Attempts != 1:
			t.Errorf("step %s, done before the kill: %d attempts, want 1", s.Name, s.Attempts)
		case s.Name == "defragment" && s.Attempts < 2:
			t.Errorf("step defragment: %d attempts, want the killed one and the resumed one", s.Attempts)
		}
	}
	t.Logf("attempts: %s", strings.Join(attempts, ", "))
	t.Logf("wall time: %s", time.Since(began).Round(time.Millisecond))
}

// natsForReplicas starts a 3-node NATS cluster for serve processes that share it, and the one
// seed they all sign with: each trusts only what this key signed.
func natsForReplicas(t *testing.T, dir string) (*natstest.Cluster, string) {
	t.Helper()
	seed := filepath.Join(dir, "serve.nk")
	kp, err := config.WriteSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	var accounts bytes.Buffer
	if err := queue.WriteServerConfig(&accounts, "conf", "REMEDIATOR", pub, nil); err != nil {
		t.Fatal(err)
	}
	return natstest.Start(t, natstest.Options{Accounts: accounts.String()}), seed
}

// replicaConfig writes the configuration of serve process name, one of several on the NATS
// cluster nc, for the etcd cluster, and returns its path.
func replicaConfig(t *testing.T, dir, name string, nc *natstest.Cluster, seed, policies string, etcd *etcdtest.Cluster) string {
	t.Helper()
	return writeFile(t, filepath.Join(dir, name+".yaml"), fmt.Sprintf(`listen: 127.0.0.1:0
data_dir: %s
nats:
  url: %s
  nkey_file: %s
  insecure: true
  replicas: 3
  # natstest gives each node 1GB of file store; the default limits reserve more than that.
  limits:
    events: {max_bytes: 64MiB}
    incidents: {max_bytes: 64MiB}
    evidence: {max_bytes: 64MiB}
    archive: {max_bytes: 64MiB}
policies_dir: %s
clusters:
  - name: default
    etcd:
      endpoints: [%s]
`, filepath.Join(dir, "data-"+name), nc.URL(), seed, policies, strings.Join(etcd.Endpoints(), ", ")))
}

// debugLogging wraps bin so that serve logs at debug level (waits for the lock, parked
// messages), for startProcess, which starts it with the flags every test gives. The wrapper
// execs bin, so that killing the process kills serve itself.
func debugLogging(t *testing.T, bin string) string {
	t.Helper()
	path := writeFile(t, filepath.Join(t.TempDir(), "remediator-debug"), fmt.Sprintf("#!/bin/sh\nexec %q \"$@\" --log-level debug\n", bin))
	if err := os.Chmod(path, 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// takeoverPath are the streams and consumers that another replica's takeover goes through:
// the run's redelivery, the incident, the lock and its fence, the waits for a lock still held.
var takeoverPath = []struct{ stream, consumer string }{
	{"REMEDIATOR_WORK", "executor"},
	{"REMEDIATOR_WORK", ""},
	{"REMEDIATOR_WAITS", "waiter"},
	{"REMEDIATOR_WAITS", ""},
	{"KV_remediator_incidents", ""},
	{"KV_remediator_locks", ""},
	{"KV_remediator_fences", ""},
}

// natsVictim picks the NATS node to kill with the replica, the worst one: the leader of the
// executor's consumer, which tracks the run's ack deadline, and, moved there by leader
// stepdowns, of everything else on the takeover's path, so that the takeover waits for an
// election at every one of them. Called before the remediation, so that the stepdowns do not
// disturb it.
func natsVictim(t *testing.T, c *natstest.Cluster, seed string) int {
	t.Helper()
	conn, js := natsClient(t, c, seed)
	defer conn.Close()
	target := natsLeader(t, js, "REMEDIATOR_WORK", "executor")
	for _, p := range takeoverPath {
		what := strings.TrimSuffix(p.stream+" > "+p.consumer, " > ")
		deadline := time.Now().Add(15 * time.Second)
		for {
			leader := natsLeader(t, js, p.stream, p.consumer)
			if leader == target {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: leader %s, not %s, after its stepdowns", what, leader, target)
			}
			subject := "$JS.API.STREAM.LEADER.STEPDOWN." + p.stream
			if p.consumer != "" {
				subject = "$JS.API.CONSUMER.LEADER.STEPDOWN." + p.stream + "." + p.consumer
			}
			resp, err := conn.Request(subject, []byte(fmt.Sprintf(`{"placement":{"preferred":%q}}`, target)), 5*time.Second)
			if err != nil {
				t.Logf("%s: stepdown to %s: %v", what, target, err)
			} else if !strings.Contains(string(resp.Data), `"success":true`) {
				t.Logf("%s: stepdown to %s: %s", what, target, resp.Data)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	i, err := strconv.Atoi(strings.TrimPrefix(target, "n"))
	if err != nil {
		t.Fatalf("leader %q is no node of the cluster", target)
	}
	return i
}

// natsLeaders says who leads each stream and consumer of the takeover's path.
func natsLeaders(t *testing.T, c *natstest.Cluster, seed string) string {
	t.Helper()
	conn, js := natsClient(t, c, seed)
	defer conn.Close()
	var out []string
	for _, p := range takeoverPath {
		out = append(out, fmt.Sprintf("%s: %s", strings.TrimSuffix(p.stream+" > "+p.consumer, " > "), natsLeader(t, js, p.stream, p.consumer)))
	}
	return strings.Join(out, ", ")
}

func natsClient(t *testing.T, c *natstest.Cluster, seed string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	key, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := nats.Connect(c.URL(), key, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(conn)
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	return conn, js
}

// natsLeader returns the node that leads the stream (its consumer, if one is named), which
// must have three replicas.
func natsLeader(t *testing.T, js jetstream.JetStream, stream, consumer string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	if consumer == "" {
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatalf("stream %s: %v", stream, err)
		}
		if info.Config.Replicas != 3 || info.Cluster == nil {
			t.Fatalf("stream %s: %d replicas, cluster %+v; want R3", stream, info.Config.Replicas, info.Cluster)
		}
		return info.Cluster.Leader
	}
	cons, err := st.Consumer(ctx, consumer)
	if err != nil {
		t.Fatalf("consumer %s > %s: %v", stream, consumer, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatalf("consumer %s > %s: %v", stream, consumer, err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil {
		t.Fatalf("consumer %s > %s: %d replicas, cluster %+v; want R3", stream, consumer, info.Config.Replicas, info.Cluster)
	}
	return info.Cluster.Leader
}

// stepStarts returns when a replica's log says it started the step of the incident.
func stepStarts(t *testing.T, logPath, incident, step string) []time.Time {
	t.Helper()
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Time                time.Time
			Msg, Incident, Step string
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "step started" && line.Incident == incident && line.Step == step {
			out = append(out, line.Time)
		}
	}
	return out
}

// logBetween returns a replica's log lines stamped from..to, each cut to a readable length.
func logBetween(t *testing.T, logPath string, from, to time.Time) string {
	t.Helper()
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct{ Time time.Time }
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Time.Before(from) || line.Time.After(to) {
			continue
		}
		text := sc.Text()
		if len(text) > 400 {
			text = text[:400] + "..."
		}
		fmt.Fprintf(&b, "  %s\n", text)
	}
	return b.String()
}

// natsElections returns the leader elections the surviving NATS nodes logged from..to. The
// nodes' logs are in natstest's folder of the test, beside dir (a folder of the same test).
func natsElections(dir string, from, to time.Time) string {
	logs, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), "*", "n[0-9].log"))
	var b strings.Builder
	for _, path := range logs {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			// [pid] 2006/01/02 15:04:05.000000 [INF] ...
			f := strings.SplitN(line, " ", 4)
			if len(f) < 4 || !strings.Contains(f[3], "leader") {
				continue
			}
			at, err := time.ParseInLocation("2006/01/02 15:04:05.000000", f[1]+" "+f[2], time.Local)
			if err != nil || at.Before(from) || at.After(to) {
				continue
			}
			fmt.Fprintf(&b, "  %s: %s %s\n", filepath.Base(path), f[2], f[3])
		}
	}
	return b.String()
}

func stepIndex(inc remediator.Incident, name string) int {
	for i, s := range inc.Steps {
		if s.Name == name {
			return i
		}
	}
	return -1
}

// listIncidents reads the first page of incidents and its next_cursor; an error is the API
// not answering, which it may not for a moment while NATS elects new leaders.
func listIncidents(addr string) ([]remediator.Incident, string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/api/v1/incidents")
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("GET /api/v1/incidents: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var list struct {
		Incidents []remediator.Incident `json:"incidents"`
		Next      string                `json:"next_cursor"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, "", err
	}
	return list.Incidents, list.Next, nil
}

// pollIncident polls the API until the only incident satisfies done, riding out moments when
// it does not answer; more than one incident fails at once.
func pollIncident(t *testing.T, addr string, timeout time.Duration, done func(remediator.Incident) bool) remediator.Incident {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var (
		last    []remediator.Incident
		lastErr error
	)
	for time.Now().Before(deadline) {
		all, _, err := listIncidents(addr)
		if err != nil {
			lastErr = err
		} else {
			last, lastErr = all, nil
			if len(all) > 1 {
				t.Fatalf("%d incidents, want 1: %s", len(all), describe(all))
			}
			if len(all) == 1 && done(all[0]) {
				return all[0]
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", "  ")
	t.Fatalf("no incident as wanted after %s (last error: %v); incidents:\n%s", timeout, lastErr, b)
	return remediator.Incident{}
}
