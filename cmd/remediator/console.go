package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/handlers"
)

// The operator's console: see the incidents (list, show, watch), stop and retry their runs
// (cancel, retry), and pause a cluster (pause, resume), over the operator API.

// outputs are the output formats of the console's commands: -o means output format on every
// command, as in kubectl.
var outputs = []string{"text", "json", "yaml"}

// outputFlag adds -o/--output to cmd, with the formats it takes and its default.
func outputFlag(cmd *cobra.Command, out *string, def string, formats ...string) {
	cmd.Flags().StringVarP(out, "output", "o", def, "output format: "+strings.Join(formats, ", "))
	cmd.PreRunE = chain(cmd.PreRunE, func(cmd *cobra.Command, _ []string) error {
		if !slices.Contains(formats, *out) {
			return usageErrorf(cmd, "-o %q: not an output format (formats: %s)", *out, strings.Join(formats, ", "))
		}
		return nil
	})
}

func chain(first, then func(*cobra.Command, []string) error) func(*cobra.Command, []string) error {
	if first == nil {
		return then
	}
	return func(cmd *cobra.Command, args []string) error {
		if err := first(cmd, args); err != nil {
			return err
		}
		return then(cmd, args)
	}
}

// printAs writes v as JSON or YAML, or with text for the text format.
func printAs(w io.Writer, format string, v any, text func(io.Writer) error) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(data)
		if err != nil {
			return err
		}
		_, err = w.Write(y)
		return err
	}
	return text(w)
}

// getIncident reads one incident from the API.
func (c *apiClient) getIncident(cmd *cobra.Command, id string) (*remediator.Incident, error) {
	body, err := c.do(cmd, http.MethodGet, "/api/v1/incidents/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, err
	}
	var inc remediator.Incident
	if err := json.Unmarshal(body, &inc); err != nil {
		return nil, fmt.Errorf("the service's answer is not an incident: %v", err)
	}
	return &inc, nil
}

func listCmd() *cobra.Command {
	var state, cluster, output string
	var limit int
	var cf clientFlagValues
	cmd := &cobra.Command{
		Use:   "list [--state STATE] [--cluster NAME]",
		Short: "List incidents, the newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			if state != "" {
				q.Set("state", state)
			}
			if cluster != "" {
				q.Set("cluster", cluster)
			}
			q.Set("limit", fmt.Sprint(limit))
			body, err := c.do(cmd, http.MethodGet, "/api/v1/incidents?"+q.Encode(), nil)
			if err != nil {
				return err
			}
			var page remediator.Page
			if err := json.Unmarshal(body, &page); err != nil {
				return fmt.Errorf("the service's answer is not a page of incidents: %v", err)
			}
			return printAs(cmd.OutOrStdout(), output, page, func(w io.Writer) error {
				if len(page.Incidents) == 0 {
					_, err := fmt.Fprintln(w, "no incidents")
					return err
				}
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tCLUSTER\tSTATE\tREMEDIATION\tAGE\tREASON")
				now := time.Now()
				for _, inc := range page.Incidents {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", inc.ID, inc.Cluster, inc.State, inc.Remediation,
						remediator.HumanDuration(now.Sub(inc.CreatedAt)), clipText(inc.Reason, 70))
				}
				if page.Next != "" {
					fmt.Fprintf(tw, "(more: --limit %d, or the API's cursor %s)\n", remediator.MaxPageSize, page.Next)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only incidents in this state: "+statesList())
	cmd.Flags().StringVar(&cluster, "cluster", "", "only incidents of this cluster")
	cmd.Flags().IntVar(&limit, "limit", remediator.DefaultPageSize, fmt.Sprintf("at most this many (up to %d)", remediator.MaxPageSize))
	outputFlag(cmd, &output, "text", outputs...)
	cf.add(cmd)
	return cmd
}

func statesList() string {
	names := make([]string, len(remediator.States))
	for i, s := range remediator.States {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func showCmd() *cobra.Command {
	var output string
	var cf clientFlagValues
	cmd := &cobra.Command{
		Use:   "show INCIDENT",
		Short: "Show an incident: its state, what it waits for, and its steps",
		Args:  exactArgs(1, "INCIDENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			inc, err := c.getIncident(cmd, args[0])
			if err != nil {
				return err
			}
			return printAs(cmd.OutOrStdout(), output, inc, func(w io.Writer) error {
				return writeIncident(w, inc, time.Now())
			})
		},
	}
	outputFlag(cmd, &output, "text", outputs...)
	cf.add(cmd)
	return cmd
}

// writeIncident writes an incident as an operator reads it at a glance.
func writeIncident(w io.Writer, inc *remediator.Incident, now time.Time) error {
	fmt.Fprintf(w, "incident %s on %s: %s\n", inc.ID, inc.Cluster, inc.State)
	what := inc.Remediation
	if inc.Title != "" {
		what = inc.Title + " (" + inc.Remediation + ")"
	}
	fmt.Fprintf(w, "  remediation  %s, policy %s, mode %s", what, inc.Policy, inc.Mode)
	if inc.Attempt > 1 {
		fmt.Fprintf(w, ", attempt %d", inc.Attempt)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  opened       %s (%s ago)\n", inc.CreatedAt.UTC().Format(time.RFC3339), remediator.HumanDuration(now.Sub(inc.CreatedAt)))
	if inc.Reason != "" {
		fmt.Fprintf(w, "  reason       %s\n", inc.Reason)
	}
	if a := inc.Approval; a != nil && inc.State == remediator.StateAwaitingApproval {
		fmt.Fprintf(w, "  waits for    %d of %d approval(s) before %s, until %s (%s left); remediator approve %s\n",
			len(a.Approvals), a.Required, a.Gate, a.ExpiresAt.UTC().Format(time.RFC3339), remediator.HumanDuration(a.ExpiresAt.Sub(now)), inc.ID)
	}
	if c := inc.Cancel; c != nil && !inc.State.Terminal() {
		fmt.Fprintf(w, "  cancel       requested by %s at %s: %s\n", c.By, c.At.UTC().Format(time.RFC3339), c.Reason)
	}
	fmt.Fprintf(w, "  evidence     %d alert(s), %d firing\n", inc.EvidenceCount, inc.EvidenceStats.Firing)
	if len(inc.Steps) > 0 {
		fmt.Fprintln(w, "  steps")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for i, s := range inc.Steps {
			fmt.Fprintf(tw, "    %d. %s\t%s\t%s\t%s\n", i+1, s.Name, s.Risk, s.State, stepNote(s, now))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if inc.State.Terminal() {
		fmt.Fprintf(w, "  report       remediator report %s\n", inc.ID)
	}
	return nil
}

// stepNote says what a step is doing or did: its attempt of the maximum, the next retry and
// the last error while it runs; how long it took once done.
func stepNote(s remediator.Step, now time.Time) string {
	switch s.State {
	case remediator.StepRunning:
		var parts []string
		if s.MaxAttempts > 0 {
			parts = append(parts, fmt.Sprintf("attempt %d of %d", s.Attempts, s.MaxAttempts))
		} else {
			parts = append(parts, fmt.Sprintf("attempt %d", s.Attempts))
		}
		if !s.RetryAt.IsZero() && s.RetryAt.After(now) {
			parts = append(parts, fmt.Sprintf("next at %s (in %s)", s.RetryAt.UTC().Format("15:04:05"), remediator.HumanDuration(s.RetryAt.Sub(now))))
		} else if !s.StartedAt.IsZero() {
			parts = append(parts, "for "+remediator.HumanDuration(now.Sub(s.StartedAt)))
		}
		if s.Error != "" {
			parts = append(parts, "last error: "+clipText(s.Error, 200))
		}
		return strings.Join(parts, ", ")
	case remediator.StepSucceeded:
		return remediator.HumanDuration(s.Duration())
	case remediator.StepFailed:
		return clipText(s.Error, 200)
	case remediator.StepSkipped:
		return clipText(strings.ReplaceAll(s.Output, "\n", "; "), 200)
	}
	return ""
}

func clipText(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func watchCmd() *cobra.Command {
	var output string
	var interval time.Duration
	var cf clientFlagValues
	cmd := &cobra.Command{
		Use:   "watch INCIDENT",
		Short: "Follow an incident's steps live until it ends",
		Long: `Follows the incident until it ends: each event of its timeline as it happens, and the step
running with its attempt of the maximum, its next retry and its last error. It exits 0 when
the incident ends succeeded or skipped, 1 when it ends failed, rejected or cancelled. With -o
json or yaml it writes the incident each time it changes (one JSON document per line, or YAML
documents separated by ---).`,
		Args: exactArgs(1, "INCIDENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			seen, lastStatus, updated := 0, "", time.Time{}
			for first := true; ; first = false {
				if !first {
					select {
					case <-cmd.Context().Done():
						return nil
					case <-time.After(interval):
					}
				}
				inc, err := c.getIncident(cmd, args[0])
				if err != nil {
					return err
				}
				switch output {
				case "json", "yaml":
					if inc.UpdatedAt.After(updated) || first {
						updated = inc.UpdatedAt
						if output == "yaml" && !first {
							fmt.Fprintln(out, "---")
						}
						if output == "json" {
							data, _ := json.Marshal(inc)
							fmt.Fprintf(out, "%s\n", data)
						} else if err := printAs(out, "yaml", inc, nil); err != nil {
							return err
						}
					}
				default:
					if first {
						fmt.Fprintf(out, "incident %s on %s: %s (%s)\n", inc.ID, inc.Cluster, cmp.Or(inc.Title, inc.Remediation), inc.State)
					}
					// A full timeline gives way in its middle: events already shown may move.
					seen = min(seen, len(inc.Timeline))
					for _, e := range inc.Timeline[seen:] {
						step := ""
						if e.Step != "" {
							step = " " + e.Step + ":"
						}
						fmt.Fprintf(out, "%s%s %s\n", e.At.Local().Format("15:04:05"), step, e.Message)
					}
					seen = len(inc.Timeline)
					if status := runningStatus(inc, time.Now()); status != "" && status != lastStatus {
						fmt.Fprintf(out, "         ... %s\n", status)
						lastStatus = status
					}
				}
				if inc.State.Terminal() {
					if output == "text" {
						fmt.Fprintf(out, "incident %s ended %s; remediator report %s\n", inc.ID, inc.State, inc.ID)
					}
					if inc.State == remediator.StateSucceeded || inc.State == remediator.StateSkipped {
						return nil
					}
					return remediator.Errorf(endedCode, "incident %s ended %s: %s", inc.ID, inc.State, inc.Reason)
				}
			}
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often to look")
	outputFlag(cmd, &output, "text", outputs...)
	cf.add(cmd)
	return cmd
}

// endedCode marks an incident that ended without recovery, for watch's exit code.
const endedCode = remediator.EPRECONDITION

// runningStatus is what the step running is at, for watch: "" if none runs.
func runningStatus(inc *remediator.Incident, now time.Time) string {
	for _, s := range inc.Steps {
		if s.State == remediator.StepRunning {
			// The time it has run for changes every look: it is not news.
			s.StartedAt = time.Time{}
			return "step " + s.Name + ": " + stepNote(s, now)
		}
	}
	return ""
}

// controlCmd is a command that asks the service for an operator's control over an incident
// or a cluster, and prints what it answered.
func cancelCmd() *cobra.Command {
	var as, reason, output string
	var cf clientFlagValues
	cmd := &cobra.Command{
		Use:   "cancel INCIDENT --reason TEXT [--as NAME]",
		Short: "Stop an incident's run before its next step; its clean-up steps still run",
		Long: `Stops the run over the operator API (POST /api/v1/incidents/{id}/cancel). The step running
finishes, unless it is read-only or low risk (a check, a wait): then it is cut short. A
higher-risk step that started and waits for its retry finishes too. The steps after it do
not run; its clean-up steps (restoring a suspended liveness probe, say) still do, and are
never cut. The incident takes no more answers and ends cancelled, with who and why. A run
that changed nothing yet (waiting for approval or a window) ends cancelled at once.`,
		Args: exactArgs(1, "INCIDENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return usageErrorf(cmd, "--reason is needed: say why the run is cancelled, for the timeline")
			}
			inc, err := cf.operatorPost(cmd, "/api/v1/incidents/"+url.PathEscape(args[0])+"/cancel", map[string]string{"approver": as, "reason": reason})
			if err != nil {
				return err
			}
			return printIncident(cmd, output, inc, func(w io.Writer) {
				if inc.State == remediator.StateCancelled {
					fmt.Fprintf(w, "incident %s cancelled: %s\n", inc.ID, inc.Reason)
					return
				}
				fmt.Fprintf(w, "incident %s: cancel requested; the run stops before its next step, and its clean-up steps still run (remediator watch %s)\n", inc.ID, inc.ID)
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the run is cancelled (goes in the timeline)")
	cmd.Flags().StringVar(&as, "as", "", "your name (needed with the shared token)")
	outputFlag(cmd, &output, "text", outputs...)
	cf.add(cmd)
	return cmd
}

func retryCmd() *cobra.Command {
	var as, output string
	var cf clientFlagValues
	cmd := &cobra.Command{
		Use:   "retry INCIDENT [--as NAME]",
		Short: "Run a failed or cancelled incident again, from its first step that did not succeed",
		Long: `Runs the incident again over the operator API (POST /api/v1/incidents/{id}/retry), as a new
attempt, from its first step that did not succeed; from its first step when a clean-up step
ran, as that undid what the steps before it set up. The gates apply as to a new run:
approval where the policy asks for it, maintenance windows, dry-run, max_attempts (its own
earlier attempts count); its own earlier attempts do not count against its cooldown.`,
		Args: exactArgs(1, "INCIDENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			inc, err := cf.operatorPost(cmd, "/api/v1/incidents/"+url.PathEscape(args[0])+"/retry", map[string]string{"approver": as})
			if err != nil {
				return err
			}
			return printIncident(cmd, output, inc, func(w io.Writer) {
				fmt.Fprintf(w, "incident %s: %s (remediator watch %s)\n", inc.ID, inc.Reason, inc.ID)
			})
		},
	}
	cmd.Flags().StringVar(&as, "as", "", "your name (needed with the shared token)")
	outputFlag(cmd, &output, "text", outputs...)
	cf.add(cmd)
	return cmd
}

// pauseCmd is `remediator pause` or `remediator resume`.
func pauseCmd(pause bool) *cobra.Command {
	var as, reason, cluster, output string
	var all bool
	var cf clientFlagValues
	verb := map[bool]string{true: "pause", false: "resume"}[pause]
	cmd := &cobra.Command{
		Use: verb + " --cluster NAME|--all" + map[bool]string{true: " --reason TEXT", false: ""}[pause],
		Short: map[bool]string{true: "Start no new step on a cluster (or every cluster) until resumed: the kill switch",
			false: "Let the steps held back by a pause go on"}[pause],
		Long: map[bool]string{true: `Pauses over the operator API (POST /api/v1/clusters/{name}/pause). No new step starts on a
paused cluster, clean-up steps included; the step running finishes. Its incidents wait and
say who paused it and why, on the incidents page, in Slack and in the
remediator_cluster_paused metric. Pausing a paused cluster keeps the first pause.`,
			false: `Resumes over the operator API (POST /api/v1/clusters/{name}/resume). The incidents held
back go on within 15 seconds. A cluster paused by name is resumed by name, and --all
resumes only a pause of every cluster.`}[pause],
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case all == (cluster != ""):
				return usageErrorf(cmd, "name one cluster with --cluster NAME, or every cluster with --all")
			case pause && strings.TrimSpace(reason) == "":
				return usageErrorf(cmd, "--reason is needed: say why, for whoever finds the incidents waiting")
			case all:
				cluster = remediator.AllClusters
			}
			c, err := cf.operatorClient(cmd)
			if err != nil {
				return err
			}
			body, err := c.do(cmd, http.MethodPost, "/api/v1/clusters/"+url.PathEscape(cluster)+"/"+verb, map[string]string{"approver": as, "reason": reason})
			if err != nil {
				return err
			}
			if !pause {
				var cs handlers.Clusters
				if err := json.Unmarshal(body, &cs); err != nil {
					return fmt.Errorf("the service's answer is not the clusters: %v", err)
				}
				return printAs(cmd.OutOrStdout(), output, cs, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "%s resumed; incidents held back go on within 15s\n", target(cluster))
					return err
				})
			}
			var p remediator.Pause
			if err := json.Unmarshal(body, &p); err != nil {
				return fmt.Errorf("the service's answer is not a pause: %v", err)
			}
			return printAs(cmd.OutOrStdout(), output, p, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%s paused by %s at %s: %s\n", target(p.Cluster), p.By, p.At.UTC().Format(time.RFC3339), p.Reason)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster")
	cmd.Flags().BoolVar(&all, "all", false, "every cluster")
	if pause {
		cmd.Flags().StringVar(&reason, "reason", "", "why (shown wherever the incidents wait)")
	}
	cmd.Flags().StringVar(&as, "as", "", "your name (needed with the shared token)")
	outputFlag(cmd, &output, "text", outputs...)
	cf.add(cmd)
	return cmd
}

func target(cluster string) string {
	if cluster == remediator.AllClusters {
		return "every cluster"
	}
	return "cluster " + cluster
}

func clustersCmd() *cobra.Command {
	var output string
	var cf clientFlagValues
	cmd := &cobra.Command{
		Use:   "clusters",
		Short: "List the configured clusters: paused or not, and whether their etcd answers",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			body, err := c.do(cmd, http.MethodGet, "/api/v1/clusters", nil)
			if err != nil {
				return err
			}
			var cs handlers.Clusters
			if err := json.Unmarshal(body, &cs); err != nil {
				return fmt.Errorf("the service's answer is not the clusters: %v", err)
			}
			return printAs(cmd.OutOrStdout(), output, cs, func(w io.Writer) error {
				if p := cs.PausedAll; p != nil {
					fmt.Fprintf(w, "every cluster paused by %s at %s: %s\n", p.By, p.At.UTC().Format(time.RFC3339), p.Reason)
				}
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "CLUSTER\tPAUSED\tETCD")
				for _, s := range cs.Clusters {
					paused, etcd := "no", "not checked yet"
					if p := s.Paused; p != nil {
						paused = fmt.Sprintf("by %s: %s", p.By, p.Reason)
					}
					if e := s.Etcd; e != nil && e.Reachable {
						etcd = "reachable at " + e.Endpoint
					} else if e != nil {
						etcd = "unreachable: " + e.Error
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, paused, etcd)
				}
				return tw.Flush()
			})
		},
	}
	outputFlag(cmd, &output, "text", outputs...)
	cf.add(cmd)
	return cmd
}

// printIncident writes the incident an operator's request answered with.
func printIncident(cmd *cobra.Command, output string, inc *remediator.Incident, text func(io.Writer)) error {
	return printAs(cmd.OutOrStdout(), output, inc, func(w io.Writer) error {
		text(w)
		return nil
	})
}
