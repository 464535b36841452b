package main

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/handlers"
	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/internal/worker"
	"github.com/remediator/remediator/policies"
	"github.com/remediator/remediator/remediations"
)

// policyCmd is `remediator policy lint DIR`.
func policyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with policy files"}
	cmd.AddCommand(&cobra.Command{
		Use:   "lint DIR",
		Short: "Check the policy files in DIR, as serve would at start-up",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := policies.LoadDir(args[0], remediations.New(remediations.Deps{}))
			if err != nil {
				return err
			}
			for _, p := range set.Policies() {
				fmt.Fprintf(cmd.OutOrStdout(), "ok  %s: %s -> %s (%s)\n", p.Source, p.Name, p.Decision.Remediation, p.Decision.Mode)
			}
			return nil
		},
	})
	return cmd
}

// simulateCmd is `remediator simulate --payload FILE`: which policy matches each alert, the
// plan with its risks and gates, and what would need approval, touching nothing.
func simulateCmd() *cobra.Command {
	var payload, configPath, at string
	cmd := &cobra.Command{
		Use:   "simulate --payload FILE",
		Short: "Show what an Alertmanager payload would make remediator do, touching nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath, os.Getenv)
			if err != nil {
				return err
			}
			now := time.Now()
			if at != "" {
				if now, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("--at: %w", err)
				}
			}
			body, err := os.ReadFile(payload)
			if err != nil {
				return err
			}
			batch, rejected, err := handlers.DecodeAlertmanager(body, cfg.ClusterNames(), now)
			if err != nil {
				return err
			}
			catalog := remediations.New(remediations.Deps{})
			set, err := loadPolicies(cfg.PoliciesDir, catalog)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, r := range rejected {
				fmt.Fprintf(out, "refused: %s\n", r)
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
				switch {
				case err != nil && !ok:
					fmt.Fprintf(out, "%sno policy matches (%v)\n", what, err)
				case !ok:
					fmt.Fprintf(out, "%sno policy matches: nothing happens\n", what)
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
	cmd.Flags().StringVar(&payload, "payload", "", "Alertmanager webhook payload (JSON)")
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (for clusters, policies_dir and dry_run)")
	cmd.Flags().StringVar(&at, "at", "", "simulate at this time (RFC 3339), for maintenance windows")
	_ = cmd.MarkFlagRequired("payload")
	return cmd
}
