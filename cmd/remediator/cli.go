package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/handlers"
	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/remediations"
)

// answerCmd is `remediator approve` or `remediator reject`: an answer over the operator API,
// under the same rules as a click in Slack.
func answerCmd(approve bool) *cobra.Command {
	var as, comment, output string
	var cf clientFlagValues
	verb := map[bool]string{true: "approve", false: "reject"}[approve]
	cmd := &cobra.Command{
		Use:   verb + " INCIDENT [--as NAME]",
		Short: fmt.Sprintf("%s an incident that waits for approval, as one of its approvers", strings.ToUpper(verb[:1])+verb[1:]),
		Long: `Answers over the operator API (POST /api/v1/incidents/{id}/` + verb + `), with the token in
--token-file: an operator token of your own (api.operators_file) names you; with the shared
token (api.bearer_token_file, also taken from --config) name yourself with --as. Either way
you must be one of the approvers the incident's policy names.`,
		Args: exactArgs(1, "INCIDENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			inc, err := cf.operatorPost(cmd, "/api/v1/incidents/"+url.PathEscape(args[0])+"/"+verb, map[string]string{"approver": as, "comment": comment})
			if err != nil {
				return err
			}
			return printIncident(cmd, output, inc, func(w io.Writer) {
				fmt.Fprintf(w, "incident %s is %s", inc.ID, inc.State)
				if a := inc.Approval; a != nil && inc.State == remediator.StateAwaitingApproval {
					fmt.Fprintf(w, " (%d of %d approvals)", len(a.Approvals), a.Required)
				}
				fmt.Fprintln(w)
			})
		},
	}
	cmd.Flags().StringVar(&as, "as", "", "the approver's name, as the policy lists it (needed with the shared token)")
	cmd.Flags().StringVar(&comment, "comment", "", "why")
	outputFlag(cmd, &output, "text", outputs...)
	cf.add(cmd)
	return cmd
}

// clientFlagValues are the flags of every command that calls the API: where the service is,
// the operator token, and the configuration that can tell both.
type clientFlagValues struct{ server, tokenFile, configPath string }

// add adds the flags; --server and --token-file fall back to REMEDIATOR_SERVER and
// REMEDIATOR_TOKEN_FILE.
func (f *clientFlagValues) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.server, "server", "", "remediator's URL or host:port (default: $REMEDIATOR_SERVER, external_url of --config, or http://127.0.0.1:9095)")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "file holding the operator token (default: $REMEDIATOR_TOKEN_FILE, or api.bearer_token_file of --config)")
	cmd.Flags().StringVar(&f.configPath, "config", "", "remediator's configuration, for the server, its certificate and the token")
	cmd.Flags().String("ca-file", "", "CA certificate that signed the service's HTTPS certificate, if the system does not trust it")
}

func (f *clientFlagValues) client(cmd *cobra.Command) (*apiClient, error) {
	server, tokenFile := f.server, f.tokenFile
	if server == "" {
		server = os.Getenv("REMEDIATOR_SERVER")
	}
	if tokenFile == "" {
		tokenFile = os.Getenv("REMEDIATOR_TOKEN_FILE")
	}
	return newAPIClient(cmd, f.configPath, server, tokenFile)
}

// operatorClient is client, for a request that needs an operator token.
func (f *clientFlagValues) operatorClient(cmd *cobra.Command) (*apiClient, error) {
	c, err := f.client(cmd)
	if err == nil && c.token == "" {
		err = usageErrorf(cmd, "an operator token is needed: --token-file FILE (or $REMEDIATOR_TOKEN_FILE, or api.bearer_token_file in --config)")
	}
	return c, err
}

// operatorPost sends an operator's request about an incident (approve, reject, close, cancel,
// retry) and returns the incident the service answered with.
func (f *clientFlagValues) operatorPost(cmd *cobra.Command, path string, body any) (*remediator.Incident, error) {
	c, err := f.operatorClient(cmd)
	if err != nil {
		return nil, err
	}
	out, err := c.do(cmd, http.MethodPost, path, body)
	if err != nil {
		return nil, err
	}
	var inc remediator.Incident
	if err := json.Unmarshal(out, &inc); err != nil {
		return nil, fmt.Errorf("the service's answer is not an incident: %v", err)
	}
	return &inc, nil
}

// apiClient calls remediator's HTTP API as an operator.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// newAPIClient reaches the service at server, or the address of --config, with the
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
	base, err := serverURL(cmd, server, cfg)
	if err != nil {
		return nil, err
	}
	c := &apiClient{base: base}
	if tokenFile != "" {
		token, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, remediator.Errorf(remediator.EINVALID, "operator token: %v", describeFileError(err))
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
			return nil, remediator.Errorf(remediator.EINVALID, "CA certificate: %v", describeFileError(err))
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, remediator.Errorf(remediator.EINVALID, "%s holds no PEM certificate", f)
		}
	}
	c.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	return c, nil
}

// describeFileError says what is wrong with a file without Go's operation prefix.
func describeFileError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return pe.Path + ": no such file"
		case errors.Is(err, fs.ErrPermission):
			return pe.Path + ": permission denied"
		}
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}

// do sends a request with a JSON body (none if nil) and returns the response body of a 200.
// The service's refusal keeps its code (not found, refused, ...) for the exit code; a service
// that cannot be reached is EUNAVAILABLE.
func (c *apiClient) do(cmd *cobra.Command, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, c.base+path, rd)
	if err != nil {
		return nil, remediator.Errorf(remediator.EINVALID, "--server %s: not a URL", c.base)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, remediator.Errorf(remediator.EUNAVAILABLE, "cannot reach remediator at %s: %s (is serve running there? --server or $REMEDIATOR_SERVER names another)", c.base, reachError(err))
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, remediator.Errorf(remediator.EUNAVAILABLE, "reading remediator's answer from %s: %v", c.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Code string }
		if json.Unmarshal(out, &e) != nil || e.Error == "" {
			return nil, remediator.Errorf(handlers.CodeOfStatus(resp.StatusCode), "%s answered %s, not as remediator would: is --server remediator's address?", c.base, resp.Status)
		}
		if e.Code == "" || e.Code == "internal" {
			e.Code = handlers.CodeOfStatus(resp.StatusCode)
		}
		return nil, remediator.Errorf(e.Code, "%s", e.Error)
	}
	return out, nil
}

// reachError says why a request did not reach the service, in a person's words.
func reachError(err error) string {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &dnsErr):
		return "no such host " + dnsErr.Name
	case errors.Is(err, context.DeadlineExceeded), os.IsTimeout(err):
		return "no answer within 30s"
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return "its HTTPS certificate is not trusted (give its CA with --ca-file)"
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err.Error()
	}
	return err.Error()
}

// closeCmd is `remediator close INCIDENT --reason TEXT`: an operator closes a finished
// incident whose alerts will not resolve.
func closeCmd() *cobra.Command {
	var as, reason, output string
	var cf clientFlagValues
	cmd := &cobra.Command{
		Use:   "close INCIDENT --reason TEXT [--as NAME]",
		Short: "Close a finished incident whose alerts will not resolve (silenced, or sent without send_resolved)",
		Long: `Closes over the operator API (POST /api/v1/incidents/{id}/close), with the same tokens as
approve and reject. Only a finished incident can be closed; the reason goes in its timeline.`,
		Args: exactArgs(1, "INCIDENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			inc, err := cf.operatorPost(cmd, "/api/v1/incidents/"+url.PathEscape(args[0])+"/close", map[string]string{"approver": as, "reason": reason})
			if err != nil {
				return err
			}
			return printIncident(cmd, output, inc, func(w io.Writer) {
				fmt.Fprintf(w, "incident %s (%s) closed at %s\n", inc.ID, inc.State, inc.ClosedAt.UTC().Format(time.RFC3339))
			})
		},
	}
	cmd.Flags().StringVar(&as, "as", "", "your name (needed with the shared token)")
	cmd.Flags().StringVar(&reason, "reason", "", "why it is closed by hand")
	outputFlag(cmd, &output, "text", outputs...)
	cf.add(cmd)
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

// serverURL is where the CLI reaches the service: server (a URL, or host:port for plain
// HTTP), the configuration's external_url or listen address, or the default listen address.
func serverURL(cmd *cobra.Command, server string, cfg *config.Config) (string, error) {
	switch {
	case server != "" && !strings.Contains(server, "://"):
		server = "http://" + server
	case server == "" && cfg != nil:
		server = cfg.BaseURL()
	case server == "":
		server = "http://127.0.0.1:9095"
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", usageErrorf(cmd, "--server %q: give remediator's URL (https://remediator.example:9095) or host:port", server)
	}
	return strings.TrimSuffix(server, "/"), nil
}

// reportCmd is `remediator report INCIDENT`: the post-incident report, from the service.
func reportCmd() *cobra.Command {
	var output, file, format string
	var cf clientFlagValues
	cmd := &cobra.Command{
		Use:   "report INCIDENT [-o md|html|json] [--file PATH]",
		Short: "Print an incident's post-incident report",
		Long: `Fetches the report from the service (GET /api/v1/incidents/{id}/report?format=...): summary,
root cause, impact window, timeline, evidence, steps, approvals, each member's figures before
and after, what was not done, and follow-ups. html is one self-contained page. It goes to
standard output, or to the file --file names.`,
		Args: exactArgs(1, "INCIDENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "" {
				output = format
			}
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			body, err := c.do(cmd, http.MethodGet, "/api/v1/incidents/"+url.PathEscape(args[0])+"/report?format="+url.QueryEscape(output), nil)
			if err != nil {
				return err
			}
			if file != "" {
				if err := os.WriteFile(file, body, 0o644); err != nil {
					return fmt.Errorf("writing the report: %s", describeFileError(err))
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "report of incident %s written to %s\n", args[0], file)
				return nil
			}
			_, err = cmd.OutOrStdout().Write(body)
			return err
		},
	}
	outputFlag(cmd, &output, "md", "md", "html", "json")
	cmd.Flags().StringVar(&file, "file", "", "write the report to this file instead of standard output")
	cmd.Flags().StringVar(&format, "format", "", "the output format (use -o)")
	_ = cmd.Flags().MarkDeprecated("format", "use -o md|html|json")
	cf.add(cmd)
	return cmd
}

// remediationsCmd is `remediator remediations`: every remediation with its steps, their risk,
// and the parameters a policy may give it. --markdown prints the README's section on them.
func remediationsCmd() *cobra.Command {
	var markdown bool
	cmd := &cobra.Command{
		Use:   "remediations",
		Short: "List every remediation: its steps, their risk, and the parameters a policy may set",
		Args:  noArgs,
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
