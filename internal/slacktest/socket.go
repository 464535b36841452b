package slacktest

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// App is the remediator app's ID: the api_app_id of every payload and the app_id of hello.
const App = "A0REMEDIATOR"

// Envelope types, the type of a Socket Mode envelope.
const (
	EventsAPI     = "events_api"
	SlashCommands = "slash_commands"
	Interactive   = "interactive"
)

// AckTimeout is how long Slack waits for an envelope's ack before it counts a failure.
const AckTimeout = 3 * time.Second

// ErrNoAck is Send's error when the client did not ack within AckTimeout.
var ErrNoAck = errors.New("no ack within 3s, Slack's limit")

// ErrNoClient is Send's error when no client was connected within AckTimeout.
var ErrNoClient = errors.New("no Socket Mode client connected within 3s")

// linkPath is where apps.connections.open sends clients, as Slack's wss://.../link/.
const linkPath = "/link/"

// pingEvery is how often the server pings each connection: socketmode reconnects when no ping
// arrives within its ping interval (30 s unless OptionPingInterval), so pings must come well
// inside any interval a test sets.
const pingEvery = time.Second

// upgrader accepts socketmode's Origin (https://api.slack.com), which is not this server.
var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// socket is the Socket Mode side of a Server.
type socket struct {
	mu        sync.Mutex
	appToken  string
	down      bool
	closed    bool
	ticket    int
	tickets   map[string]bool
	conns     []*conn // in the order they connected; Send uses the newest
	connects  int
	connected chan struct{} // closed and replaced on every connect, to wake Send
	acks      map[string]chan json.RawMessage
	wg        sync.WaitGroup
}

// conn is one client's WebSocket.
type conn struct {
	ws *websocket.Conn
	// wmu serializes writes, which gorilla/websocket allows one at a time (pings excepted).
	wmu  sync.Mutex
	gone chan struct{} // closed once the connection is closed and forgotten
}

func newSocket() *socket {
	return &socket{tickets: map[string]bool{}, connected: make(chan struct{}), acks: map[string]chan json.RawMessage{}}
}

// EnableSocket makes apps.connections.open accept the app-level token (xapp-...); until
// then, and for any other token, it answers invalid_auth.
func (s *Server) EnableSocket(appToken string) {
	s.sock.mu.Lock()
	defer s.sock.mu.Unlock()
	s.sock.appToken = appToken
}

// SocketDown makes apps.connections.open fail with 503 while down, to test reconnection
// backoff; connections already open stay open (DropSocket closes them).
func (s *Server) SocketDown(down bool) {
	s.sock.mu.Lock()
	defer s.sock.mu.Unlock()
	s.sock.down = down
}

// Connects is how many times a client has connected to the WebSocket.
func (s *Server) Connects() int {
	s.sock.mu.Lock()
	defer s.sock.mu.Unlock()
	return s.sock.connects
}

// Connected is how many WebSockets are open now.
func (s *Server) Connected() int {
	s.sock.mu.Lock()
	defer s.sock.mu.Unlock()
	return len(s.sock.conns)
}

// DropSocket closes every open WebSocket without a close frame, as a network failure does,
// and returns once the server has forgotten them.
func (s *Server) DropSocket() {
	s.sock.mu.Lock()
	conns := append([]*conn(nil), s.sock.conns...)
	s.sock.mu.Unlock()
	for _, c := range conns {
		_ = c.ws.Close()
	}
	for _, c := range conns {
		<-c.gone
	}
}

// Disconnect sends every open WebSocket the disconnect message Slack sends before it retires
// a connection; reason is "refresh_requested", "warning", "link_disabled" or "too_many_websockets".
func (s *Server) Disconnect(reason string) error {
	s.sock.mu.Lock()
	conns := append([]*conn(nil), s.sock.conns...)
	s.sock.mu.Unlock()
	msg := map[string]any{"type": "disconnect", "reason": reason, "debug_info": map[string]any{"host": "applink-remediator-test"}}
	var errs []error
	for _, c := range conns {
		errs = append(errs, c.write(msg))
	}
	return errors.Join(errs...)
}

// Send delivers an envelope of the type (EventsAPI, SlashCommands, Interactive) holding the
// payload to the newest connected client, waiting up to AckTimeout for one to connect, and
// returns the payload of its ack (nil if it acked without one) or, after AckTimeout, ErrNoAck.
func (s *Server) Send(envelopeType string, payload any) (json.RawMessage, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("%s envelope: encode payload: %w", envelopeType, err)
	}
	c, err := s.sock.newest(AckTimeout)
	if err != nil {
		return nil, fmt.Errorf("%s envelope: %w", envelopeType, err)
	}
	id := envelopeID()
	acked := make(chan json.RawMessage, 1)
	s.sock.mu.Lock()
	s.sock.acks[id] = acked
	s.sock.mu.Unlock()
	defer func() {
		s.sock.mu.Lock()
		delete(s.sock.acks, id)
		s.sock.mu.Unlock()
	}()

	timeout := time.NewTimer(AckTimeout)
	defer timeout.Stop()
	err = c.write(map[string]any{
		"envelope_id": id, "type": envelopeType, "payload": json.RawMessage(body),
		"accepts_response_payload": acceptsResponse(envelopeType, body), "retry_attempt": 0, "retry_reason": "",
	})
	if err != nil {
		return nil, fmt.Errorf("%s envelope %s: %w", envelopeType, id, err)
	}
	select {
	case ack := <-acked:
		return ack, nil
	case <-timeout.C:
		return nil, fmt.Errorf("%s envelope %s: %w", envelopeType, id, ErrNoAck)
	}
}

// acceptsResponse says whether Slack would use an ack's payload as the answer: for slash
// commands, modal submissions and options requests it does, for the rest it ignores it.
func acceptsResponse(envelopeType string, payload []byte) bool {
	var p struct{ Type string }
	_ = json.Unmarshal(payload, &p)
	return envelopeType == SlashCommands ||
		envelopeType == Interactive && (p.Type == "view_submission" || p.Type == "block_suggestion")
}

// newest is the newest open connection, waiting up to d for one.
func (k *socket) newest(d time.Duration) (*conn, error) {
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		k.mu.Lock()
		var c *conn
		if len(k.conns) > 0 {
			c = k.conns[len(k.conns)-1]
		}
		connected := k.connected
		k.mu.Unlock()
		if c != nil {
			return c, nil
		}
		select {
		case <-connected:
		case <-timeout.C:
			return nil, ErrNoClient
		}
	}
}

// openSocket answers apps.connections.open with a one-time URL of the WebSocket.
func (s *Server) openSocket(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	k := s.sock
	k.mu.Lock()
	switch {
	case k.down || k.closed:
		k.mu.Unlock()
		http.Error(w, "socket mode is down", http.StatusServiceUnavailable)
		return
	case token != "" && token == s.token:
		k.mu.Unlock()
		writeJSON(w, map[string]any{"ok": false, "error": "not_allowed_token_type"})
		return
	case k.appToken == "" || token != k.appToken:
		k.mu.Unlock()
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	k.ticket++
	ticket := fmt.Sprint(k.ticket)
	k.tickets[ticket] = true
	k.mu.Unlock()

	s.mu.Lock()
	s.calls = append(s.calls, Call{Method: "apps.connections.open", Form: r.Form})
	s.mu.Unlock()
	url := "ws" + strings.TrimPrefix(s.srv.URL, "http") + linkPath + "?ticket=" + ticket + "&app_id=" + App
	writeJSON(w, map[string]any{"ok": true, "url": url})
}

// serveSocket upgrades a request that carries an unused ticket, says hello and reads acks
// until the connection closes.
func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	k := s.sock
	ticket := r.URL.Query().Get("ticket")
	k.mu.Lock()
	valid := k.tickets[ticket]
	delete(k.tickets, ticket)
	k.mu.Unlock()
	if !valid {
		http.Error(w, "unknown or used ticket", http.StatusUnauthorized)
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the client
	}

	c := &conn{ws: ws, gone: make(chan struct{})}
	// Hold the writes until hello is out, so no envelope goes first.
	c.wmu.Lock()
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		c.wmu.Unlock()
		_ = ws.Close()
		return
	}
	k.conns = append(k.conns, c)
	k.connects++
	n := len(k.conns)
	close(k.connected)
	k.connected = make(chan struct{})
	k.wg.Add(2)
	k.mu.Unlock()
	_ = ws.WriteJSON(map[string]any{
		"type": "hello", "num_connections": n,
		"debug_info":      map[string]any{"host": "applink-remediator-test", "build_number": 1, "approximate_connection_time": 18060},
		"connection_info": map[string]any{"app_id": App},
	})
	c.wmu.Unlock()

	go func() {
		defer k.wg.Done()
		c.ping()
	}()
	defer k.wg.Done()
	k.read(c)
}

// read hands each ack to the Send waiting for it, then forgets the connection.
func (k *socket) read(c *conn) {
	defer func() {
		_ = c.ws.Close()
		k.mu.Lock()
		for i, o := range k.conns {
			if o == c {
				k.conns = append(k.conns[:i], k.conns[i+1:]...)
				break
			}
		}
		k.mu.Unlock()
		close(c.gone)
	}()
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(msg, &ack) != nil {
			continue
		}
		k.mu.Lock()
		acked := k.acks[ack.EnvelopeID]
		k.mu.Unlock()
		if acked != nil {
			select {
			case acked <- ack.Payload:
			default: // a second ack of the same envelope
			}
		}
	}
}

// ping pings the client every pingEvery until the connection is gone.
func (c *conn) ping() {
	tick := time.NewTicker(pingEvery)
	defer tick.Stop()
	for {
		if c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(pingEvery)) != nil {
			return
		}
		select {
		case <-c.gone:
			return
		case <-tick.C:
		}
	}
}

// write sends one message, with a deadline so a client that stopped reading cannot hang it.
func (c *conn) write(v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(AckTimeout))
	if err := c.ws.WriteJSON(v); err != nil {
		return fmt.Errorf("write to socket: %w", err)
	}
	return nil
}

// close closes every WebSocket, refuses new ones, and waits for their goroutines.
func (k *socket) close() {
	k.mu.Lock()
	k.closed = true
	conns := append([]*conn(nil), k.conns...)
	k.mu.Unlock()
	for _, c := range conns {
		_ = c.ws.Close()
	}
	k.wg.Wait()
}

// envelopeID is a random UUID, the shape of Slack's envelope IDs.
func envelopeID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// commands numbers slash commands and events, which Slack tells apart by trigger and event IDs.
var commands atomic.Int64

// SlashCommand is the payload of a slash_commands envelope: userID typed command (with its
// slash) and text in Channel.
func SlashCommand(userID, command, text string) json.RawMessage {
	n := commands.Add(1)
	payload, _ := json.Marshal(map[string]string{
		"token": "0verificationtoken", "team_id": Team, "team_domain": "remediator-test",
		"channel_id": Channel, "channel_name": "etcd-incidents",
		"user_id": userID, "user_name": strings.ToLower(userID),
		"command": command, "text": text, "api_app_id": App, "is_enterprise_install": "false",
		"response_url": fmt.Sprintf("https://hooks.slack.com/commands/%s/%d/abc", Team, n),
		"trigger_id":   fmt.Sprintf("%d.1.3", n),
	})
	return payload
}

// AppHomeOpened is the payload of an events_api envelope: the event callback of userID opening
// the app's Home tab, in the app's DM with them.
func AppHomeOpened(userID string) json.RawMessage {
	n := commands.Add(1)
	now := time.Now().Unix()
	payload, _ := json.Marshal(map[string]any{
		"token": "0verificationtoken", "team_id": Team, "api_app_id": App, "type": "event_callback",
		"event": map[string]any{
			"type": "app_home_opened", "user": userID, "channel": "D" + strings.TrimPrefix(userID, "U"),
			"tab": "home", "event_ts": fmt.Sprintf("%d.%06d", now, n),
		},
		"event_id": fmt.Sprintf("Ev0%08d", n), "event_time": now,
		"authorizations":        []map[string]any{{"team_id": Team, "user_id": "U0BOT", "is_bot": true, "is_enterprise_install": false}},
		"is_ext_shared_channel": false,
	})
	return payload
}
