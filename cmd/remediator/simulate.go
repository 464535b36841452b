package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/spf13/cobra"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/handlers"
	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/internal/worker"
	"github.com/remediator/remediator/policies"
	"github.com/remediator/remediator/remediations"
)

// policyCmd is `remediator policy lint PATH...`.
func policyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with policy files"}
	cmd.AddCommand(&cobra.Command{
		Use:   "lint PATH...",
		Short: "Check policy files, and folders of them, as serve checks its policies at start-up",
		Long: `Check policy files, and folders of them (their *.yaml and *.yml files, in name order), as
serve checks its policies_dir at start-up; every problem of every file is reported in one run.

Each valid policy is printed to stdout: ok  FILE: NAME -> REMEDIATION (MODE).
Each problem is printed to stderr as FILE:LINE: policy "NAME": message. A problem in a match
expression is printed as FILE:LINE:COLUMN:, the line and column in the file of the character
where CEL stopped; where the file spells the expression with escapes (\" or '' in a quoted
string), it is printed at the line of match, and the message ends with the column within the
expression: (column 12 of the expression), or (line 2, column 6 of the expression). A policy
without a name is #N, the Nth in its file.

lint exits with status 1 if it found a problem.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf(cmd, "%s needs the policy files or folders to check", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ps, errs := policies.Check(remediations.New(remediations.Deps{}), args...)
			for _, p := range ps {
				fmt.Fprintf(cmd.OutOrStdout(), "ok  %s: %s -> %s (%s)\n", p.Source, p.Name, p.Decision.Remediation, p.Decision.Mode)
			}
			for _, err := range errs {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
			}
			if len(errs) > 0 {
				return fmt.Errorf("policy lint: %d problem(s)", len(errs))
			}
			return nil
		},
	})
	return cmd
}

// simulateCmd is `remediator simulate --payload FILE`: which policy matches each alert, the
// plan with its risks and gates, and what would need approval, touching nothing.
func simulateCmd() *cobra.Command {
	var payload, configPath, at, kind string
	cmd := &cobra.Command{
		Use:   "simulate --payload FILE|-",
		Short: "Show what an Alertmanager payload or Kubernetes events would make remediator do, touching nothing",
		Long: `Show what a webhook payload would make remediator do, touching nothing: which policy matches
each alert, the plan of each incident with its risks, and which steps wait for an approval or a
maintenance window.

The payload (--payload FILE, or - for stdin) is an Alertmanager webhook payload, as POST
/webhooks/alertmanager takes, or Kubernetes events, as POST /webhooks/kubernetes takes from
kubernetes-event-exporter: one Event, or an array of them. simulate tells which from the
content: an array, or an object with an Event's keys (involvedObject, reason, metadata ...), is
Kubernetes events; an object with Alertmanager's keys (alerts, groupKey, receiver ...) is
Alertmanager's. When the content does not tell, say which with --kind.

Clusters, policies_dir and dry_run come from --config. Without it the defaults apply: the
built-in policies and one cluster, named default. A payload for another cluster (an alert's
cluster label, an event's clusterName) is refused, as serve would refuse it: add the cluster
to a configuration file's clusters (clusters[].name, with its etcd.endpoints) and pass that
file with --config.

As in serve, only the events of kube-system's etcd and kube-apiserver pods and of
kubernetes.trusted_objects open incidents; other objects' events are evidence only.

--at is the time to simulate at, for maintenance windows (now when unset): RFC 3339, such as
2026-12-07T03:00:00Z or 2026-12-07T04:00:00+01:00, or, in UTC, 2026-12-07T03:00 or
"2026-12-07 03:00".`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			if at != "" {
				var err error
				if now, err = parseAt(at); err != nil {
					return usageErrorf(cmd, "%v", err)
				}
			}
			if kind != "" && kind != remediator.SourceAlertmanager && kind != remediator.SourceKubernetes {
				return usageErrorf(cmd, "--kind %q: not a kind of payload (kinds: alertmanager, kubernetes)", kind)
			}
			cfg, err := config.Load(configPath, os.Getenv)
			if err != nil {
				return err
			}
			name, body, err := readPayload(payload, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if kind == "" {
				if kind, err = payloadKind(name, body); err != nil {
					return usageErrorf(cmd, "%v", err)
				}
			}
			var (
				batch    remediator.Batch
				rejected []string
				ignored  int
			)
			if kind == remediator.SourceKubernetes {
				batch, ignored, rejected, err = handlers.DecodeKubernetes(body, cfg.ClusterNames(), now)
				handlers.MarkUntrusted(&batch, trustedObjects(cfg))
			} else {
				batch, rejected, err = handlers.DecodeAlertmanager(body, cfg.ClusterNames(), now)
			}
			if err != nil {
				return fmt.Errorf("payload %s: %w", name, err)
			}
			catalog := remediations.New(remediations.Deps{})
			set, err := loadPolicies(cfg.PoliciesDir, catalog)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			described := "an Alertmanager webhook payload"
			if kind == remediator.SourceKubernetes {
				described = "Kubernetes events"
			}
			fmt.Fprintf(out, "payload %s: %s\n", name, described)
			for _, r := range rejected {
				fmt.Fprintf(out, "refused: %s\n", r)
			}
			if ignored > 0 {
				fmt.Fprintf(out, "ignored: %d event(s) that are not signals remediator acts on\n", ignored)
			}
			// Alerts for the same cluster and remediation make one incident, as in serve.
			type incident struct {
				decision remediator.Decision
				cluster  string
				alerts   int
			}
			var incidents []*incident
			fmt.Fprintln(out, "alerts:")
			for _, a := range batch.Alerts {
				d, ok, err := set.Match(a)
				what := fmt.Sprintf("  %s (%s) on %s: ", a.Name(), a.Status, a.Cluster)
				because := ""
				if err != nil {
					because = fmt.Sprintf(" (%v)", err)
				}
				switch {
				case a.Context && ok && d.Mode != remediator.ModeDeny && d.Mode != remediator.ModeContext:
					fmt.Fprintf(out, "%spolicy %s would run %s, but the event is not of a control-plane pod in kube-system nor of kubernetes.trusted_objects: kept as evidence for the incidents around it on %s; nothing runs\n", what, d.Policy, d.Remediation, a.Cluster)
				case !ok && a.Source == remediator.SourceKubernetes:
					// As in serve: a probe failure or a back-off says something is wrong, not what.
					fmt.Fprintf(out, "%sno policy matches%s: kept as evidence for the incidents around it on %s; nothing runs\n", what, because, a.Cluster)
				case !ok:
					fmt.Fprintf(out, "%sno policy matches%s: nothing happens\n", what, because)
				case d.Mode == remediator.ModeDeny:
					fmt.Fprintf(out, "%spolicy %s denies remediation: nothing happens\n", what, d.Policy)
				case d.Mode == remediator.ModeContext:
					fmt.Fprintf(out, "%spolicy %s keeps it as evidence for the incidents around it on %s; nothing runs\n", what, d.Policy, a.Cluster)
				case a.Status == remediator.AlertResolved:
					fmt.Fprintf(out, "%spolicy %s: joins the incident it fired into; nothing new runs\n", what, d.Policy)
				default:
					fmt.Fprintf(out, "%spolicy %s -> %s (mode %s)\n", what, d.Policy, d.Remediation, d.Mode)
					i := slices.IndexFunc(incidents, func(x *incident) bool { return x.cluster == a.Cluster && x.decision.Remediation == d.Remediation })
					if i < 0 {
						incidents = append(incidents, &incident{decision: d, cluster: a.Cluster})
						i = len(incidents) - 1
					}
					incidents[i].alerts++
				}
			}
			for _, inc := range incidents {
				d := inc.decision
				plan, err := catalog.Plan(d.Remediation, d.Params)
				if err != nil {
					return err
				}
				sim := worker.Simulate(d, inc.cluster, plan, now, cfg.DryRun)
				fmt.Fprintf(out, "\nincident on %s: %s for %d alert(s), policy %s, mode %s\n  the run %s\n",
					inc.cluster, d.Remediation, inc.alerts, d.Policy, d.Mode, sim.Start)
				for i, s := range sim.Steps {
					fmt.Fprintf(out, "  %d. %-11s %-11s %s\n", i+1, s.Name, s.Risk, s.Description)
					if s.Gate != "" {
						fmt.Fprintf(out, "     ^ %s\n", s.Gate)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&payload, "payload", "", "Alertmanager webhook payload or Kubernetes events (JSON); - reads stdin")
	cmd.Flags().StringVar(&kind, "kind", "", "alertmanager or kubernetes, when the payload's content does not tell")
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (for clusters, policies_dir and dry_run)")
	cmd.Flags().StringVar(&at, "at", "", "simulate at this time (RFC 3339, or 2006-01-02 15:04 in UTC), for maintenance windows")
	_ = cmd.MarkFlagRequired("payload")
	return cmd
}

// atLayouts are the times --at takes; those without a zone are UTC.
var atLayouts = []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02 15:04"}

func parseAt(s string) (time.Time, error) {
	for _, layout := range atLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf(`--at %q: not a time; use RFC 3339, such as 2026-12-07T03:00:00Z, or 2026-12-07T03:00 or "2026-12-07 03:00" for UTC`, s)
}

// readPayload reads --payload, a file or - for stdin, and returns the name messages call it.
func readPayload(path string, stdin io.Reader) (string, []byte, error) {
	if path == "-" {
		body, err := io.ReadAll(stdin)
		if err != nil {
			return "", nil, remediator.Errorf(remediator.EINVALID, "payload stdin: %v", err)
		}
		return "stdin", body, nil
	}
	body, err := os.ReadFile(path)
	if err != nil {
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err
		}
		return "", nil, remediator.Errorf(remediator.EINVALID, "payload %s: %v", path, err)
	}
	return path, body, nil
}

// Top-level keys of the two payloads, to tell them apart.
var (
	alertmanagerKeys = []string{"version", "groupKey", "truncatedAlerts", "receiver", "status", "alerts",
		"groupLabels", "commonLabels", "commonAnnotations", "externalURL"}
	eventKeys = []string{"kind", "apiVersion", "metadata", "involvedObject", "reason", "message", "source",
		"type", "count", "series", "firstTimestamp", "lastTimestamp", "eventTime", "action", "related",
		"reportingComponent", "reportingInstance", "clusterName"}
)

// payloadKind tells Kubernetes events (an array, or an object with an Event's keys) from an
// Alertmanager payload (an object with its keys). Broken JSON goes to the Alertmanager decoder,
// which says where it breaks, as the Kubernetes one would.
func payloadKind(name string, body []byte) (string, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	tok, err := dec.ReadToken()
	if err == nil && tok.Kind() == '[' {
		return remediator.SourceKubernetes, nil
	}
	var am, events bool
	for err == nil && tok.Kind() == '{' && dec.PeekKind() == '"' {
		var key jsontext.Token
		if key, err = dec.ReadToken(); err == nil {
			am = am || slices.Contains(alertmanagerKeys, key.String())
			events = events || slices.Contains(eventKeys, key.String())
			err = dec.SkipValue()
		}
	}
	switch {
	case am && !events:
		return remediator.SourceAlertmanager, nil
	case events && !am:
		return remediator.SourceKubernetes, nil
	case !jsontext.Value(body).IsValid():
		return remediator.SourceAlertmanager, nil
	}
	return "", fmt.Errorf("payload %s: cannot tell an Alertmanager payload (an object with alerts) from Kubernetes events (an Event object with involvedObject and reason, or an array of them): say which with --kind alertmanager or --kind kubernetes", name)
}
