// Package slacktest is a local stand-in for Slack in tests: an HTTP server that speaks the
// few Web API methods remediator uses and records every call, and a signer that builds
// interaction requests the way Slack builds and signs them.
package slacktest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Channel is the channel ID the server answers with.
const Channel = "C0REMEDIATE"

// Team is the workspace of the bot (auth.test), of the users who click (ButtonClick) and of
// every user the test did not set otherwise (users.info).
const Team = "T0TEAM"

// User is what users.info says of a user; the zero User is a full member of Team.
type User struct {
	// Guest sets is_restricted (a multi-channel guest), UltraGuest is_ultra_restricted (a
	// single-channel guest, for whom Slack sets both; each alone lets a test check each).
	Guest, UltraGuest bool
	// TeamID is the user's workspace, Team if empty.
	TeamID string
	// EnterpriseID is the user's Enterprise Grid organization, the server's (SetEnterprise) if
	// empty.
	EnterpriseID string
	// Stranger is a user of another organization in a shared channel (is_stranger).
	Stranger bool
	// Bot is a bot user (is_bot), AppUser an app's user (is_app_user).
	Bot, AppUser bool
	// Deleted is a deactivated user.
	Deleted bool
}

// Call is one Web API call.
type Call struct {
	Method string
	Form   url.Values
}

// Blocks decodes the call's blocks.
func (c Call) Blocks() []map[string]any {
	var b []map[string]any
	_ = json.Unmarshal([]byte(c.Form.Get("blocks")), &b)
	return b
}

// Server is a fake Slack Web API: chat.postMessage, chat.update, chat.postEphemeral,
// usergroups.users.list, auth.test, users.info, views.publish and, for Socket Mode,
// apps.connections.open (see EnableSocket).
type Server struct {
	srv        *httptest.Server
	token      string
	mu         sync.Mutex
	calls      []Call
	groups     map[string][]string
	users      map[string]User
	enterprise string
	down       int
	ts         int
	gone       bool
	sock       *socket
}

// New starts a server that accepts the bot token and stops when the test ends.
func New(t testing.TB, token string) *Server {
	s := &Server{token: token, groups: map[string][]string{}, users: map[string]User{}, sock: newSocket()}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	// The WebSockets first: httptest's Close does not wait for hijacked connections.
	t.Cleanup(func() {
		s.sock.close()
		s.srv.Close()
	})
	return s
}

// URL is the Web API's base URL, for slack.api_url.
func (s *Server) URL() string { return s.srv.URL + "/api/" }

// SetGroup sets a user group's members.
func (s *Server) SetGroup(id string, users ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[id] = users
}

// SetUser sets what users.info says of a user.
func (s *Server) SetUser(id string, u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[id] = u
}

// SetEnterprise puts Team in an Enterprise Grid organization: auth.test and users.info answer
// with its enterprise ID.
func (s *Server) SetEnterprise(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enterprise = id
}

// Down makes the next n calls fail with 503, as Slack does when it is down.
func (s *Server) Down(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = n
}

// DeleteMessages makes every message posted so far gone, as if someone deleted it in Slack:
// chat.update answers message_not_found.
func (s *Server) DeleteMessages() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gone = true
}

// Calls returns the calls of a method ("" for all), in order.
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	_ = r.ParseForm()
	jsonForm(r)
	// Socket Mode has its own token and its own outage (SocketDown), so Down leaves it alone.
	switch {
	case r.URL.Path == linkPath:
		s.serveSocket(w, r)
		return
	case method == "apps.connections.open":
		s.openSocket(w, r)
		return
	}
	s.mu.Lock()
	if s.down > 0 {
		s.down--
		s.mu.Unlock()
		http.Error(w, "slack is down", http.StatusServiceUnavailable)
		return
	}
	token := r.Form.Get("token")
	if token == "" {
		token = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	if token != s.token {
		s.mu.Unlock()
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	s.calls = append(s.calls, Call{Method: method, Form: r.Form})
	s.ts++
	ts := fmt.Sprintf("1763700000.%06d", s.ts)
	members := s.groups[r.Form.Get("usergroup")]
	user, enterprise := s.users[r.Form.Get("user")], s.enterprise
	gone := s.gone && method == "chat.update"
	if method == "chat.postMessage" && r.Form.Get("thread_ts") == "" {
		s.gone = false
	}
	s.mu.Unlock()
	if gone {
		writeJSON(w, map[string]any{"ok": false, "error": "message_not_found"})
		return
	}

	switch method {
	case "chat.postMessage":
		writeJSON(w, map[string]any{"ok": true, "channel": Channel, "ts": ts, "message": map[string]any{"text": r.Form.Get("text")}})
	case "chat.update":
		writeJSON(w, map[string]any{"ok": true, "channel": r.Form.Get("channel"), "ts": r.Form.Get("ts"), "text": r.Form.Get("text")})
	case "chat.postEphemeral":
		writeJSON(w, map[string]any{"ok": true, "message_ts": ts})
	case "views.publish":
		var view map[string]any
		if err := json.Unmarshal([]byte(r.Form.Get("view")), &view); err != nil || r.Form.Get("user_id") == "" {
			writeJSON(w, map[string]any{"ok": false, "error": "invalid_arguments"})
			return
		}
		maps.Copy(view, map[string]any{"id": "V0HOME" + strings.TrimPrefix(ts, "1763700000."), "team_id": Team, "app_id": App, "bot_id": "B0BOT", "hash": ts})
		writeJSON(w, map[string]any{"ok": true, "view": view})
	case "usergroups.users.list":
		if members == nil {
			writeJSON(w, map[string]any{"ok": false, "error": "no_such_subteam"})
			return
		}
		writeJSON(w, map[string]any{"ok": true, "users": members})
	case "auth.test":
		resp := map[string]any{"ok": true, "url": "https://remediator-test.slack.com/", "team": "remediator-test", "user": "remediator",
			"team_id": Team, "user_id": "U0BOT", "bot_id": "B0BOT"}
		if enterprise != "" {
			resp["enterprise_id"] = enterprise
		}
		writeJSON(w, resp)
	case "users.info":
		id := r.Form.Get("user")
		if id == "" {
			writeJSON(w, map[string]any{"ok": false, "error": "user_not_found"})
			return
		}
		writeJSON(w, map[string]any{"ok": true, "user": user.json(id, enterprise)})
	default:
		writeJSON(w, map[string]any{"ok": false, "error": "unknown_method"})
	}
}

// json is the user object of users.info.
func (u User) json(id, enterprise string) map[string]any {
	team := u.TeamID
	if team == "" {
		team = Team
	}
	if u.EnterpriseID != "" {
		enterprise = u.EnterpriseID
	}
	out := map[string]any{
		"id": id, "team_id": team, "name": strings.ToLower(id), "deleted": u.Deleted,
		"is_bot": u.Bot, "is_app_user": u.AppUser, "is_restricted": u.Guest,
		"is_ultra_restricted": u.UltraGuest, "is_stranger": u.Stranger,
	}
	if enterprise != "" {
		out["enterprise_user"] = map[string]any{"id": id, "enterprise_id": enterprise, "enterprise_name": "Remediator Corp", "teams": []string{team}}
	}
	return out
}

// jsonForm adds the top-level fields of a JSON body (views.publish, apps.connections.open) to
// r.Form, strings as they are and anything else as JSON, so a Call reads the same whichever
// way slack-go encoded it.
func jsonForm(r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		return
	}
	var fields map[string]json.RawMessage
	if json.NewDecoder(r.Body).Decode(&fields) != nil {
		return
	}
	if r.Form == nil {
		r.Form = url.Values{}
	}
	for k, raw := range fields {
		var str string
		if json.Unmarshal(raw, &str) != nil {
			str = string(raw)
		}
		r.Form.Set(k, str)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// clicks numbers the clicks, which Slack tells apart by their trigger and action times.
var clicks atomic.Int64

// ButtonClick is the body Slack posts when a user clicks a button of a message: a form whose
// payload field holds the block_actions interaction. No two clicks have the same body.
func ButtonClick(userID, userName, actionID, value string) []byte {
	return []byte(url.Values{"payload": {string(BlockActions(userID, userName, actionID, value))}}.Encode())
}

// BlockActions is the block_actions interaction of a button click, as Slack posts it (inside
// ButtonClick) or sends it over Socket Mode (Send(Interactive, ...)).
func BlockActions(userID, userName, actionID, value string) json.RawMessage {
	n := clicks.Add(1)
	payload, _ := json.Marshal(map[string]any{
		"type":         "block_actions",
		"user":         map[string]any{"id": userID, "username": userName, "name": userName, "team_id": Team},
		"api_app_id":   App,
		"container":    map[string]any{"type": "message", "message_ts": "1763700000.000001", "channel_id": Channel},
		"channel":      map[string]any{"id": Channel, "name": "etcd-incidents"},
		"response_url": "https://hooks.slack.com/actions/T0TEAM/1/abc",
		"trigger_id":   fmt.Sprintf("%d.1.2", n),
		"actions": []map[string]any{{
			"type": "button", "action_id": actionID, "block_id": "approval", "value": value,
			"text": map[string]any{"type": "plain_text", "text": actionID}, "action_ts": fmt.Sprintf("1763700001.%06d", n),
		}},
	})
	return payload
}

// Sign returns the X-Slack-Signature of a body sent at ts: v0= and the hex HMAC-SHA256, keyed
// with the signing secret, of "v0:<ts>:<body>".
func Sign(secret string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%d:", ts.Unix())
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// Request builds a request to the interactions endpoint as Slack sends it, signed at ts.
func Request(endpoint, secret string, ts time.Time, body []byte) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(string(body)))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Slack-Request-Timestamp", fmt.Sprint(ts.Unix()))
	r.Header.Set("X-Slack-Signature", Sign(secret, ts, body))
	return r
}
