package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/remediator/remediator"
)

// Store keeps incidents in JetStream key-value buckets. Every change is a compare-and-set on
// the incident's revision, so replicas never overwrite each other's work.
type Store struct {
	incidents jetstream.KeyValue
	// open maps "<cluster>.<remediation>" to the incident that is open for it.
	open jetstream.KeyValue
	// alerts maps an alert fingerprint to the incident it last joined.
	alerts jetstream.KeyValue
	// signals keeps recent context signals by "<cluster>.<fingerprint>", for SignalsKept.
	signals jetstream.KeyValue
	// evidence keeps each alert's trace by "<incident>.<fingerprint>".
	evidence jetstream.KeyValue
	// archive keeps closed incidents past the retention.
	archive jetstream.KeyValue
	// runs keeps the recent runs of each "<cluster>.<remediation>".
	runs jetstream.KeyValue
	// index holds one message per incident, in the order they opened.
	index   jetstream.Stream
	publish func(ctx context.Context, subject string, data []byte, msgID string) (bool, error)
	// maxPayload is the largest incident document the server takes.
	maxPayload func() int64
	// finished counts the incidents whose update ended them, by state.
	finished *prometheus.CounterVec
}

// SignalsKept is how long a signal that answers no policy by itself is kept to join an
// incident that opens after it.
const SignalsKept = 30 * time.Minute

// maxUpdateTries bounds the compare-and-set loop of Update under contention.
const maxUpdateTries = 20

// Get returns the incident with the given ID.
func (s *Store) Get(ctx context.Context, id string) (*remediator.Incident, error) {
	inc, _, err := s.get(ctx, id)
	return inc, err
}

func (s *Store) get(ctx context.Context, id string) (*remediator.Incident, uint64, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	e, err := s.incidents.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		if a, aerr := s.archive.Get(ctx, id); aerr == nil {
			// Archived: readable, and never changed again.
			var inc remediator.Incident
			if err := json.Unmarshal(a.Value(), &inc); err != nil {
				return nil, 0, fmt.Errorf("queue: archived incident %s: %w", id, err)
			}
			return &inc, 0, nil
		}
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrInvalidKey):
		return nil, 0, remediator.Errorf(remediator.ENOTFOUND, "incident %q not found", id)
	case err != nil:
		return nil, 0, unavailable("get incident %s", id, err)
	}
	var inc remediator.Incident
	if err := json.Unmarshal(e.Value(), &inc); err != nil {
		return nil, 0, fmt.Errorf("queue: incident %s: %w", id, err)
	}
	return &inc, e.Revision(), nil
}

// maxScan bounds the index entries one page reads, so that a filter that matches little
// costs a bounded page (with a cursor to go on), not a read of everything.
const maxScan = 1000

// List returns a page of incidents, the newest first, with the cursor of the next page ("" at
// the end). It reads the index from the cursor down, so a page costs the same at a thousand
// incidents and at a hundred thousand.
func (s *Store) List(ctx context.Context, q remediator.Query) (remediator.Page, error) {
	if q.Limit <= 0 {
		q.Limit = remediator.DefaultPageSize
	}
	// Each read has its own deadline: a page is many short reads, not one long one.
	ictx, cancel := withDefaultTimeout(ctx)
	info, err := s.index.Info(ictx)
	cancel()
	if err != nil {
		return remediator.Page{}, unavailable("read %s", streamIndex, err)
	}
	seq := info.State.LastSeq
	if q.Cursor != "" {
		c, err := strconv.ParseUint(q.Cursor, 10, 64)
		if err != nil || c == 0 {
			return remediator.Page{}, remediator.Errorf(remediator.EINVALID, "cursor %q: not a cursor this service gave", q.Cursor)
		}
		seq = min(seq, c-1)
	}
	page := remediator.Page{Incidents: []*remediator.Incident{}}
	for scanned := 0; seq >= info.State.FirstSeq && seq > 0; seq-- {
		if len(page.Incidents) == q.Limit || scanned == maxScan {
			page.Next = strconv.FormatUint(seq+1, 10)
			return page, nil
		}
		scanned++
		mctx, cancel := withDefaultTimeout(ctx)
		m, err := s.index.GetMsg(mctx, seq)
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // aged out
		}
		if err != nil {
			return remediator.Page{}, unavailable("read %s", streamIndex, err)
		}
		inc, err := s.Get(ctx, string(m.Data))
		if remediator.ErrorCode(err) == remediator.ENOTFOUND {
			continue
		}
		if err != nil {
			return remediator.Page{}, err
		}
		if q.Matches(inc) {
			page.Incidents = append(page.Incidents, inc)
		}
	}
	return page, nil
}

// Open returns the incidents that are not over yet (pending, waiting or running), the newest
// first, from the open claims: no read of the closed ones.
func (s *Store) Open(ctx context.Context) ([]*remediator.Incident, error) {
	ids, err := s.claims(ctx, ">")
	if err != nil {
		return nil, err
	}
	var out []*remediator.Incident
	for _, id := range ids {
		inc, err := s.Get(ctx, id)
		if remediator.ErrorCode(err) == remediator.ENOTFOUND {
			continue // claimed, not stored yet
		}
		if err != nil {
			return nil, err
		}
		if !inc.State.Terminal() {
			out = append(out, inc)
		}
	}
	slices.SortFunc(out, func(a, b *remediator.Incident) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

// Create stores a new incident; an incident with the same ID is ECONFLICT.
func (s *Store) Create(ctx context.Context, inc *remediator.Incident) error {
	data, err := json.Marshal(inc)
	if err != nil {
		return fmt.Errorf("queue: incident %s: %w", inc.ID, err)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if _, err := s.incidents.Create(ctx, inc.ID, data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return remediator.Errorf(remediator.ECONFLICT, "incident %s already exists", inc.ID)
		}
		return unavailable("create incident %s", inc.ID, err)
	}
	if _, err := s.publish(ctx, subjectIndex, []byte(inc.ID), "index-"+inc.ID); err != nil {
		return err // created again on a retry, as ECONFLICT, and indexed then
	}
	return nil
}

// Update applies fn to the current incident and stores the result if nobody changed it in
// between; otherwise it reads it again and retries. An error from fn stops it and is
// returned as it is. When the incident reaches a terminal state, its cluster and remediation
// are free for a new incident.
func (s *Store) Update(ctx context.Context, id string, fn func(*remediator.Incident) error) (*remediator.Incident, error) {
	for range maxUpdateTries {
		inc, rev, err := s.get(ctx, id)
		if err != nil {
			return nil, err
		}
		if rev == 0 {
			return nil, remediator.Errorf(remediator.EREFUSED, "incident %s is archived (closed and past the retention): it is read-only", id)
		}
		wasOver := inc.State.Terminal()
		if err := fn(inc); err != nil {
			return nil, err
		}
		data, err := json.Marshal(inc)
		if err != nil {
			return nil, fmt.Errorf("queue: incident %s: %w", id, err)
		}
		if max := s.maxPayload(); int64(len(data)) > max {
			// Trying again cannot make it fit.
			return nil, remediator.Errorf(remediator.ETOOLARGE, "incident %s would be %d bytes, over the NATS server's max_payload of %d: the change is not stored (%d timeline events, %d steps)",
				id, len(data), max, len(inc.Timeline), len(inc.Steps))
		}
		uctx, cancel := withDefaultTimeout(ctx)
		_, err = s.incidents.Update(uctx, id, data, rev)
		cancel()
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return nil, unavailable("update incident %s", id, err)
		}
		if inc.State.Terminal() {
			if !wasOver && s.finished != nil {
				s.finished.WithLabelValues(string(inc.State)).Inc()
			}
			if err := s.recordRun(ctx, inc); err != nil {
				return inc, err
			}
			if err := s.ReleaseOpen(ctx, inc.Cluster, inc.Remediation, inc.ID); err != nil {
				return inc, err
			}
		}
		return inc, nil
	}
	return nil, remediator.Errorf(remediator.ECONFLICT, "incident %s: changed by others %d times in a row", id, maxUpdateTries)
}

func openKey(cluster, remediation string) string { return cluster + "." + remediation }

// ClaimOpen makes id the open incident for the cluster and remediation unless one is open
// already; it returns the ID of the open incident, which is id if the claim won.
func (s *Store) ClaimOpen(ctx context.Context, cluster, remediation, id string) (string, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	key := openKey(cluster, remediation)
	for range maxUpdateTries {
		_, err := s.open.Create(ctx, key, []byte(id))
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return "", unavailable("claim %s", key, err)
		}
		e, err := s.open.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released in between
		}
		if err != nil {
			return "", unavailable("read %s", key, err)
		}
		return string(e.Value()), nil
	}
	return "", remediator.Errorf(remediator.ECONFLICT, "open incident for %s: contended", key)
}

// ReleaseOpen frees the cluster and remediation for a new incident, if id holds them.
func (s *Store) ReleaseOpen(ctx context.Context, cluster, remediation, id string) error {
	return deleteIfHeld(ctx, s.open, openKey(cluster, remediation), id)
}

// deleteIfHeld deletes key if its value is still value: compare-and-delete on the revision
// read, so a key taken over in between is left to its new holder.
func deleteIfHeld(ctx context.Context, kv jetstream.KeyValue, key, value string) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return unavailable("read %s", key, err)
	}
	if string(e.Value()) != value {
		return nil
	}
	err = kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return unavailable("release %s", key, err)
	}
	return nil
}

// OpenOn returns the IDs of the incidents open on a cluster, one per remediation.
func (s *Store) OpenOn(ctx context.Context, cluster string) ([]string, error) {
	return s.claims(ctx, cluster+".>")
}

// claims returns the IDs of the open claims whose keys match filter, each once.
func (s *Store) claims(ctx context.Context, filter string) ([]string, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	keys, err := s.open.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, unavailable("list open incidents (%s)", filter, err)
	}
	defer keys.Stop()
	var ids []string
	for key := range keys.Keys() {
		e, err := s.open.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released while we listed
		}
		if err != nil {
			return nil, unavailable("read %s", key, err)
		}
		ids = append(ids, string(e.Value()))
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil // a lister may repeat a key
}

// RememberSignal keeps a context signal, its latest word, for SignalsKept.
func (s *Store) RememberSignal(ctx context.Context, a remediator.Alert) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("queue: signal %s: %w", a.Fingerprint, err)
	}
	if _, err := s.signals.Put(ctx, a.Cluster+"."+a.Fingerprint, data); err != nil {
		return unavailable("remember signal %s", a.Fingerprint, err)
	}
	return nil
}

// RecentSignals returns the context signals of a cluster received since the given time.
func (s *Store) RecentSignals(ctx context.Context, cluster string, since time.Time) ([]remediator.Alert, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	keys, err := s.signals.ListKeysFiltered(ctx, cluster+".*")
	if err != nil {
		return nil, unavailable("list signals of %s", cluster, err)
	}
	defer keys.Stop()
	var out []remediator.Alert
	for key := range keys.Keys() {
		e, err := s.signals.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired while we listed
		}
		if err != nil {
			return nil, unavailable("read signal %s", key, err)
		}
		var a remediator.Alert
		if err := json.Unmarshal(e.Value(), &a); err != nil {
			return nil, fmt.Errorf("queue: signal %s: %w", key, err)
		}
		if !a.ReceivedAt.Before(since) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b remediator.Alert) int { return a.ReceivedAt.Compare(b.ReceivedAt) })
	return out, nil
}

// IndexAlerts remembers that the alerts with these fingerprints joined incident id.
func (s *Store) IndexAlerts(ctx context.Context, id string, fingerprints []string) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	for _, fp := range fingerprints {
		if _, err := s.alerts.Put(ctx, fp, []byte(id)); err != nil {
			return unavailable("index alert %s", fp, err)
		}
	}
	return nil
}

// AlertIncident returns the incident the alert with this fingerprint last joined.
func (s *Store) AlertIncident(ctx context.Context, fingerprint string) (string, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	e, err := s.alerts.Get(ctx, fingerprint)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrInvalidKey):
		return "", remediator.Errorf(remediator.ENOTFOUND, "no incident for alert %s", fingerprint)
	case err != nil:
		return "", unavailable("read alert %s", fingerprint, err)
	}
	return string(e.Value()), nil
}
