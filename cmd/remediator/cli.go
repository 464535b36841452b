package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/remediations"
)

// answerCmd is `remediator approve` or `remediator reject`: an answer over the operator API,
// under the same rules as a click in Slack.
func answerCmd(approve bool) *cobra.Command {
	var as, comment, server, tokenFile, configPath string
	verb := map[bool]string{true: "approve", false: "reject"}[approve]
	cmd := &cobra.Command{
		Use:   verb + " INCIDENT [--as NAME]",
		Short: fmt.Sprintf("%s an incident that waits for approval, as one of its approvers", strings.ToUpper(verb[:1])+verb[1:]),
		Long: `Answers over the operator API (POST /api/v1/incidents/{id}/` + verb + `), with the token in
--token-file: an operator token of your own (api.operators_file) names you; with the shared
token (api.bearer_token_file, also taken from --config) name yourself with --as. Either way
you must be one of the approvers the incident's policy names.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inc, err := operatorPost(cmd, configPath, server, tokenFile, args[0], verb, map[string]string{"approver": as, "comment": comment})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "incident %s is %s", inc.ID, inc.State)
			if a := inc.Approval; a != nil && inc.State == remediator.StateAwaitingApproval {
				fmt.Fprintf(cmd.OutOrStdout(), " (%d of %d approvals)", len(a.Approvals), a.Required)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().StringVar(&as, "as", "", "the approver's name, as the policy lists it (needed with the shared token)")
	cmd.Flags().StringVar(&comment, "comment", "", "why")
	clientFlags(cmd, &server, &tokenFile, &configPath)
	return cmd
}

// operatorPost sends an operator's request about an incident (approve, reject, close) to the
// operator API, with the token in tokenFile (or api.bearer_token_file of the configuration).
func operatorPost(cmd *cobra.Command, configPath, server, tokenFile, id, verb string, body any) (*remediator.Incident, error) {
	c, err := newAPIClient(cmd, configPath, server, tokenFile)
	if err != nil {
		return nil, err
	}
	if c.token == "" {
		return nil, fmt.Errorf("--token-file (or api.bearer_token_file in --config) is needed")
	}
	out, err := c.do(cmd, http.MethodPost, "/api/v1/incidents/"+url.PathEscape(id)+"/"+verb, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", verb, err)
	}
	var inc remediator.Incident
	if err := json.Unmarshal(out, &inc); err != nil {
		return nil, err
	}
	return &inc, nil
}

// apiClient calls remediator's HTTP API as an operator.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// newAPIClient reaches the service at --server, or the address of --config, with the
// operator token of tokenFile or of --config's api.bearer_token_file, if any. Over HTTPS it
// trusts the system's roots, --config's own serving certificate and --ca-file.
func newAPIClient(cmd *cobra.Command, configPath, server, tokenFile string) (*apiClient, error) {
	cfg, err := loadOptional(configPath)
	if err != nil {
		return nil, err
	}
	if tokenFile == "" && cfg != nil {
		tokenFile = cfg.API.BearerTokenFile
	}
	c := &apiClient{base: serverURL(server, cfg)}
	if tokenFile != "" {
		token, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, err
		}
		c.token = strings.TrimSpace(string(token))
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	var extra []string
	if cfg != nil && cfg.TLS.CertFile != "" {
		extra = append(extra, cfg.TLS.CertFile)
	}
	if ca, _ := cmd.Flags().GetString("ca-file"); ca != "" {
		extra = append(extra, ca)
	}
	for _, f := range extra {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", f)
		}
	}
	c.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	return c, nil
}

// do sends a request with a JSON body (none if nil) and returns the response body of a 200,
// or an error with the service's reason.
func (c *apiClient) do(cmd *cobra.Command, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal(out, &e)
		return nil, fmt.Errorf("refused (%s): %s", resp.Status, e.Error)
	}
	return out, nil
}

// clientFlags adds the flags every command that calls the API takes.
func clientFlags(cmd *cobra.Command, server, tokenFile, configPath *string) {
	cmd.Flags().StringVar(server, "server", "", "remediator's URL (default: external_url of --config, or http://127.0.0.1:9095)")
	cmd.Flags().StringVar(tokenFile, "token-file", "", "file holding the operator token (default: api.bearer_token_file of --config)")
	cmd.Flags().StringVar(configPath, "config", "", "remediator's configuration, for the server, its certificate and the token")
	cmd.Flags().String("ca-file", "", "CA certificate that signed the service's HTTPS certificate, if the system does not trust it")
}

// closeCmd is `remediator close INCIDENT --reason TEXT`: an operator closes a finished
// incident whose alerts will not resolve.
func closeCmd() *cobra.Command {
	var as, reason, server, tokenFile, configPath string
	cmd := &cobra.Command{
		Use:   "close INCIDENT --reason TEXT [--as NAME]",
		Short: "Close a finished incident whose alerts will not resolve (silenced, or sent without send_resolved)",
		Long: `Closes over the operator API (POST /api/v1/incidents/{id}/close), with the same tokens as
approve and reject. Only a finished incident can be closed; the reason goes in its timeline.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inc, err := operatorPost(cmd, configPath, server, tokenFile, args[0], "close", map[string]string{"approver": as, "reason": reason})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "incident %s (%s) closed at %s\n", inc.ID, inc.State, inc.ClosedAt.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&as, "as", "", "your name (needed with the shared token)")
	cmd.Flags().StringVar(&reason, "reason", "", "why it is closed by hand")
	clientFlags(cmd, &server, &tokenFile, &configPath)
	return cmd
}

// loadOptional reads the configuration at path for the service's address, certificate and
// token file (not its keys, which an operator's machine need not hold), or returns nil when no
// path is given.
func loadOptional(path string) (*config.Config, error) {
	if path == "" {
		return nil, nil
	}
	cfg, err := config.Read(path, os.Getenv)
	if err != nil {
		return nil, err
	}
	return &cfg, nil
}

// serverURL is where the CLI reaches the service: --server, the configuration's
// external_url or listen address, or the default listen address.
func serverURL(flag string, cfg *config.Config) string {
	switch {
	case flag != "":
		return strings.TrimSuffix(flag, "/")
	case cfg != nil:
		return strings.TrimSuffix(cfg.BaseURL(), "/")
	}
	return "http://127.0.0.1:9095"
}

// reportCmd is `remediator report INCIDENT`: the post-incident report, from the service.
func reportCmd() *cobra.Command {
	var format, server, tokenFile, configPath, output string
	cmd := &cobra.Command{
		Use:   "report INCIDENT [--format md|html|json] [-o FILE]",
		Short: "Print an incident's post-incident report",
		Long: `Fetches the report from the service (GET /api/v1/incidents/{id}/report?format=...): summary,
root cause, impact window, timeline, evidence, steps, approvals, each member's figures before
and after, what was not done, and follow-ups. html is one self-contained page.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd, configPath, server, tokenFile)
			if err != nil {
				return err
			}
			body, err := c.do(cmd, http.MethodGet, "/api/v1/incidents/"+url.PathEscape(args[0])+"/report?format="+url.QueryEscape(format), nil)
			if err != nil {
				return fmt.Errorf("report of incident %s: %w", args[0], err)
			}
			if output != "" {
				return os.WriteFile(output, body, 0o644)
			}
			_, err = cmd.OutOrStdout().Write(body)
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "md", "md, html or json")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the report to this file instead of standard output")
	clientFlags(cmd, &server, &tokenFile, &configPath)
	return cmd
}

// remediationsCmd is `remediator remediations`: every remediation with its steps, their risk,
// and the parameters a policy may give it. --markdown prints the README's section on them.
func remediationsCmd() *cobra.Command {
	var markdown bool
	cmd := &cobra.Command{
		Use:   "remediations",
		Short: "List every remediation: its steps, their risk, and the parameters a policy may set",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ds, err := remediations.New(remediations.Deps{}).Describe()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if markdown {
				_, err := fmt.Fprint(out, remediations.Markdown(ds))
				return err
			}
			for i, d := range ds {
				if i > 0 {
					fmt.Fprintln(out)
				}
				fmt.Fprintf(out, "%s\n  steps:\n", d.Name)
				for j, s := range d.Steps {
					fmt.Fprintf(out, "    %d. %-11s %-11s %s\n", j+1, s.Name, s.Risk, s.Description)
				}
				if len(d.Params) == 0 {
					fmt.Fprintln(out, "  params: none")
					continue
				}
				fmt.Fprintln(out, "  params:")
				for _, p := range d.Params {
					def := p.Default
					if def == "" {
						def = "(none)"
					}
					fmt.Fprintf(out, "    %-26s %-10s %s: %s\n", p.Name, def, p.Kind, p.Doc)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&markdown, "markdown", false, "print the README's section on the remediations, in Markdown")
	return cmd
}
