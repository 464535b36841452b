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

// The app manifests: over HTTP, and in Socket Mode.
const (
	slackManifest       = "slack/app-manifest.yaml"
	slackSocketManifest = "slack/app-manifest.socket.yaml"
)

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
	"PublishViewContext":         "",                // views.publish (the Home tab)
}

// slackCommandScope is the scope a slash command needs.
const slackCommandScope = "commands"

// slackAppManifest is the part of Slack's app manifest format this app uses.
type slackAppManifest struct {
	DisplayInformation struct {
		Name            string `yaml:"name"`
		Description     string `yaml:"description"`
		BackgroundColor string `yaml:"background_color"`
	} `yaml:"display_information"`
	Features struct {
		AppHome struct {
			HomeTabEnabled             bool `yaml:"home_tab_enabled"`
			MessagesTabEnabled         bool `yaml:"messages_tab_enabled"`
			MessagesTabReadOnlyEnabled bool `yaml:"messages_tab_read_only_enabled"`
		} `yaml:"app_home"`
		BotUser struct {
			DisplayName  string `yaml:"display_name"`
			AlwaysOnline bool   `yaml:"always_online"`
		} `yaml:"bot_user"`
		SlashCommands []struct {
			Command      string `yaml:"command"`
			URL          string `yaml:"url"`
			Description  string `yaml:"description"`
			UsageHint    string `yaml:"usage_hint"`
			ShouldEscape bool   `yaml:"should_escape"`
		} `yaml:"slash_commands"`
	} `yaml:"features"`
	OAuthConfig struct {
		Scopes struct {
			Bot []string `yaml:"bot"`
		} `yaml:"scopes"`
	} `yaml:"oauth_config"`
	Settings struct {
		EventSubscriptions struct {
			RequestURL string   `yaml:"request_url"`
			BotEvents  []string `yaml:"bot_events"`
		} `yaml:"event_subscriptions"`
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

// TestSlackAppManifest checks the app manifests: exactly the scopes the code needs, the
// /remediator command, the Home tab's event, and interactivity, pointed at remediator's
// endpoints on its external URL over HTTP, and over the socket in Socket Mode.
func TestSlackAppManifest(t *testing.T) {
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
	need = append(need, slackCommandScope)
	slices.Sort(need)
	ext := strings.TrimSuffix(build(t).serve.ExternalURL, "/")
	for _, tc := range []struct {
		path   string
		socket bool
	}{{slackManifest, false}, {slackSocketManifest, true}} {
		t.Run(tc.path, func(t *testing.T) {
			data, err := os.ReadFile(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			var m slackAppManifest
			if err := yamlstrict.Decode(data, &m); err != nil {
				t.Fatalf("%s: %v", tc.path, err)
			}
			have := slices.Sorted(slices.Values(m.OAuthConfig.Scopes.Bot))
			if !slices.Equal(have, need) {
				t.Errorf("bot scopes %v, want %v: exactly what %v and the slash command need", have, need, methods)
			}
			if m.Settings.SocketModeEnabled != tc.socket {
				t.Errorf("socket_mode_enabled: %v, want %v", m.Settings.SocketModeEnabled, tc.socket)
			}
			if !m.Features.AppHome.HomeTabEnabled || !slices.Equal(m.Settings.EventSubscriptions.BotEvents, []string{"app_home_opened"}) {
				t.Errorf("the Home tab: enabled %v, bot events %v; want it on, with app_home_opened only", m.Features.AppHome.HomeTabEnabled, m.Settings.EventSubscriptions.BotEvents)
			}
			if c := m.Features.SlashCommands; len(c) != 1 || c[0].Command != "/remediator" {
				t.Errorf("slash commands %+v, want /remediator", c)
			}
			if !m.Settings.Interactivity.IsEnabled {
				t.Errorf("interactivity is off: the Approve and Reject buttons would do nothing")
			}
			endpoints := map[string]string{"/slack/interactions": m.Settings.Interactivity.RequestURL, "/slack/events": m.Settings.EventSubscriptions.RequestURL}
			if len(m.Features.SlashCommands) == 1 {
				endpoints["/slack/commands"] = m.Features.SlashCommands[0].URL
			}
			for path, got := range endpoints {
				u, err := url.Parse(got)
				switch {
				case tc.socket && got != "":
					t.Errorf("%s in Socket Mode has the URL %q: Slack sends it over the socket, and remediator serves no Slack endpoint", path, got)
				case tc.socket:
				case err != nil || u.Scheme != "https" || u.Path != path:
					t.Errorf("URL %q: want https://<remediator>%s", got, path)
				case !strings.HasPrefix(got, ext+"/"):
					t.Errorf("URL %q is not under serve's external_url %q", got, ext)
				}
			}
		})
	}
}
