package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/remediator/remediator/internal/yamlstrict"
)

const slackManifest = "slack/app-manifest.yaml"

// slackScopes are the bot scopes of the slack.Client methods notify/slack calls ("" for a
// method that needs none). A method missing here fails the test: find its scope in Slack's API
// reference, add it here and to the app manifest.
var slackScopes = map[string]string{
	"PostMessageContext":         "chat:write",      // chat.postMessage
	"UpdateMessageContext":       "chat:write",      // chat.update
	"PostEphemeralContext":       "chat:write",      // chat.postEphemeral
	"GetUserGroupMembersContext": "usergroups:read", // usergroups.users.list
	"GetUserInfoContext":         "users:read",      // users.info
	"AuthTestContext":            "",                // auth.test
}

// slackAppManifest is the part of Slack's app manifest format this app uses.
type slackAppManifest struct {
	DisplayInformation struct {
		Name            string `yaml:"name"`
		Description     string `yaml:"description"`
		BackgroundColor string `yaml:"background_color"`
	} `yaml:"display_information"`
	Features struct {
		BotUser struct {
			DisplayName  string `yaml:"display_name"`
			AlwaysOnline bool   `yaml:"always_online"`
		} `yaml:"bot_user"`
	} `yaml:"features"`
	OAuthConfig struct {
		Scopes struct {
			Bot []string `yaml:"bot"`
		} `yaml:"scopes"`
	} `yaml:"oauth_config"`
	Settings struct {
		Interactivity struct {
			IsEnabled  bool   `yaml:"is_enabled"`
			RequestURL string `yaml:"request_url"`
		} `yaml:"interactivity"`
		OrgDeployEnabled     bool `yaml:"org_deploy_enabled"`
		SocketModeEnabled    bool `yaml:"socket_mode_enabled"`
		TokenRotationEnabled bool `yaml:"token_rotation_enabled"`
	} `yaml:"settings"`
}

// slackMethods returns the slack.Client methods the notifier calls (n.api.Method(...)).
func slackMethods(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../notify/slack/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no ../notify/slack/*.go: %v", err)
	}
	var methods []string
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
				if recv, ok := sel.X.(*ast.SelectorExpr); ok && recv.Sel.Name == "api" && !slices.Contains(methods, sel.Sel.Name) {
					methods = append(methods, sel.Sel.Name)
				}
			}
			return true
		})
	}
	slices.Sort(methods)
	return methods
}

// TestSlackAppManifest checks the app manifest: exactly the scopes the code needs, and
// interactivity pointed at remediator's /slack/interactions on its external URL.
func TestSlackAppManifest(t *testing.T) {
	data, err := os.ReadFile(slackManifest)
	if err != nil {
		t.Fatal(err)
	}
	var m slackAppManifest
	if err := yamlstrict.Decode(data, &m); err != nil {
		t.Fatalf("%s: %v", slackManifest, err)
	}
	var need []string
	methods := slackMethods(t)
	if len(methods) == 0 {
		t.Fatal("found no Slack API call in notify/slack: has the client moved?")
	}
	for _, method := range methods {
		scope, ok := slackScopes[method]
		if !ok {
			t.Errorf("notify/slack calls slack.Client.%s: add its scope to slackScopes and to %s", method, slackManifest)
			continue
		}
		if scope != "" && !slices.Contains(need, scope) {
			need = append(need, scope)
		}
	}
	slices.Sort(need)
	have := slices.Sorted(slices.Values(m.OAuthConfig.Scopes.Bot))
	if !slices.Equal(have, need) {
		t.Errorf("bot scopes %v, want %v: exactly what %v need", have, need, methods)
	}
	i := m.Settings.Interactivity
	if !i.IsEnabled {
		t.Errorf("interactivity is off: the Approve and Reject buttons would do nothing")
	}
	u, err := url.Parse(i.RequestURL)
	if err != nil || u.Scheme != "https" || u.Path != "/slack/interactions" {
		t.Errorf("interactivity request_url %q: want https://<remediator>/slack/interactions", i.RequestURL)
	}
	if ext := build(t).serve.ExternalURL; err == nil && !strings.HasPrefix(i.RequestURL, strings.TrimSuffix(ext, "/")+"/") {
		t.Errorf("interactivity request_url %q is not under serve's external_url %q", i.RequestURL, ext)
	}
	if m.Settings.SocketModeEnabled {
		t.Errorf("socket mode is on: remediator takes interactions over HTTP")
	}
}
