package remediator

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// Bounds of what an incident document holds of its evidence: an alert storm costs each alert
// O(1), and the document never outgrows a NATS message.
const (
	// EvidenceKept is how many observations an incident keeps in detail at each end: the
	// first ones, and the latest ones.
	EvidenceKept = 20
	// evidenceNames bounds the counts by alert name; the rest count under otherNames.
	evidenceNames = 64
	otherNames    = "(other)"
	// batchesRemembered is how many of the last evidence batches an incident remembers, so
	// that a batch delivered again is not counted twice.
	batchesRemembered = 512
	// observationsRemembered is how many observations of one fingerprint its trace remembers,
	// to tell a re-sent one from a new one.
	observationsRemembered = 8
	// maxTimeline bounds the timeline; past it, the events in its middle give way.
	maxTimeline = 1000
)

// EvidenceStats counts everything that joined an incident; the incident keeps only the first
// and last observations in detail, and the store keeps one Trace per fingerprint.
type EvidenceStats struct {
	// ByName counts observations by alert name (the most common names; the rest under
	// "(other)").
	ByName map[string]int `json:"by_name,omitempty"`
	// Fingerprints is how many distinct alerts joined.
	Fingerprints int `json:"fingerprints"`
	// Resolvable counts the alerts whose source says when they resolve, and Firing those of
	// them whose latest word is firing.
	Resolvable int `json:"resolvable"`
	Firing     int `json:"firing"`
	// LastAt is when the latest of them reached remediator.
	LastAt time.Time `json:"last_at,omitzero"`
	// Batches are short digests of the last batches absorbed, against counting one twice.
	Batches []string `json:"batches,omitempty"`
}

// Arrival is an alert and the batch it came in: a batch delivered again brings the same
// arrivals, which count once.
type Arrival struct {
	Batch string
	Alert
}

// Trace is what one alert (one fingerprint) brought to one incident: its latest word, how
// many observations of it came, and what the batch that last changed it changed, so that the
// same batch delivered again changes the counts once.
type Trace struct {
	Latest       Alert    `json:"latest"`
	Observations int      `json:"observations"`
	Keys         []string `json:"keys"`
	Batch        string   `json:"batch"`
	Change       Change   `json:"change"`
}

// Change is what one batch changed in one fingerprint's evidence.
type Change struct {
	Batch string `json:"batch"`
	// New is a fingerprint the incident did not hold; Resolvable says whether it resolves.
	New        bool `json:"new,omitempty"`
	Resolvable bool `json:"resolvable,omitempty"`
	// WasFiring and Firing are its latest word before and after.
	WasFiring bool `json:"was_firing,omitempty"`
	Firing    bool `json:"firing,omitempty"`
	// Observations are the observations that are new; Updates the re-sent copies that say
	// something newer.
	Observations []Alert `json:"observations,omitempty"`
	Updates      []Alert `json:"updates,omitempty"`
}

// Observe adds an observation of the trace's alert from a batch and says whether it changed
// anything: an alert re-sent by its source is not evidence twice, but a later copy updates
// what it says (a Kubernetes event's growing count). The first observation in a batch starts
// the change that batch makes; later ones in the same batch add to it.
func (t *Trace) Observe(batch string, a Alert) bool {
	if t.Batch != batch {
		firing := t.Observations > 0 && t.Latest.Status == AlertFiring
		t.Batch, t.Change = batch, Change{Batch: batch, New: t.Observations == 0, Resolvable: a.Resolves(), WasFiring: firing, Firing: firing}
	}
	key := a.key()
	if slices.Contains(t.Keys, key) {
		if !a.seen().After(t.Latest.seen()) || t.Latest.key() != key {
			return false
		}
		t.Latest.Annotations, t.Latest.EndsAt, t.Latest.LastSeenAt = a.Annotations, a.EndsAt, a.seen()
		t.Change.Updates = append(t.Change.Updates, t.Latest)
		return true
	}
	t.Keys = append(t.Keys, key)
	if len(t.Keys) > observationsRemembered {
		t.Keys = t.Keys[1:]
	}
	t.Observations++
	// The latest word is the observation with the latest start, and at the same start
	// "resolved": observations may come in any order.
	if l := t.Latest; t.Observations == 1 || a.StartsAt.After(l.StartsAt) || a.StartsAt.Equal(l.StartsAt) && a.Status == AlertResolved {
		t.Latest = a
	}
	t.Change.Firing = t.Latest.Status == AlertFiring
	t.Change.Observations = append(t.Change.Observations, a)
	return true
}

// Holds says whether the trace holds this observation of the alert already.
func (t *Trace) Holds(a Alert) bool { return slices.Contains(t.Keys, a.key()) }

// BatchDigest is the short form of a batch ID an incident remembers.
func BatchDigest(batch string) string {
	sum := sha256.Sum256([]byte(batch))
	return hex.EncodeToString(sum[:8])
}

// Absorb applies what batches changed in the evidence: counts, the kept detail, the timeline,
// and closing once none of its alerts fires. A change from a batch absorbed already is not
// counted again.
func (inc *Incident) Absorb(changes []Change) {
	s := &inc.EvidenceStats
	var last time.Time
	var absorbed []string
	for _, c := range changes {
		d := BatchDigest(c.Batch)
		if slices.Contains(s.Batches, d) {
			continue
		}
		if !slices.Contains(absorbed, d) {
			absorbed = append(absorbed, d)
		}
		if c.New {
			s.Fingerprints++
			if c.Resolvable {
				s.Resolvable++
			}
		}
		if c.Resolvable {
			s.Firing += b2i(c.Firing) - b2i(c.WasFiring)
		}
		for _, a := range c.Observations {
			last = later(last, a.ReceivedAt)
			inc.keep(a)
		}
		for _, a := range c.Updates {
			last = later(last, a.seen())
			if i := slices.IndexFunc(inc.Evidence, func(e Alert) bool { return e.key() == a.key() }); i >= 0 {
				inc.Evidence[i] = a
			}
		}
	}
	s.LastAt = later(s.LastAt, last)
	s.Batches = append(s.Batches, absorbed...)
	if n := len(s.Batches) - batchesRemembered; n > 0 {
		s.Batches = slices.Delete(s.Batches, 0, n)
	}
	inc.closeIfResolved(last)
}

// keep counts a new observation and keeps it in detail if it is among the first or, for now,
// the last.
func (inc *Incident) keep(a Alert) {
	inc.EvidenceCount++
	s := &inc.EvidenceStats
	if s.ByName == nil {
		s.ByName = map[string]int{}
	}
	name := a.Name()
	if _, ok := s.ByName[name]; !ok && len(s.ByName) >= evidenceNames {
		name = otherNames
	}
	s.ByName[name]++
	if len(inc.Evidence) >= 2*EvidenceKept {
		inc.Evidence = slices.Delete(inc.Evidence, EvidenceKept, EvidenceKept+1)
	}
	inc.Evidence = append(inc.Evidence, a)
	switch n := inc.EvidenceCount; {
	case n <= EvidenceKept:
		inc.Record(a.ReceivedAt, EventEvidence, "", "%s %s from %s (fingerprint %s)", a.Name(), a.Status, a.Source, a.Fingerprint)
	case powerOfTen(n):
		inc.Record(a.ReceivedAt, EventEvidence, "", "%d alert observations have joined (%d distinct alerts); the first and last %d are kept in detail", n, s.Fingerprints, EvidenceKept)
	}
}

// AddEvidence adds alerts to an incident held whole in memory (a test, a simulation), as the
// store does with its traces: the traces are read from the detail the incident kept.
func (inc *Incident) AddEvidence(alerts []Alert) {
	batch := newBatch(inc)
	traces := map[string]*Trace{}
	var order []string
	for _, a := range alerts {
		t, ok := traces[a.Fingerprint]
		if !ok {
			t = &Trace{}
			for _, e := range inc.Evidence {
				if e.Fingerprint == a.Fingerprint {
					t.Observe("", e)
				}
			}
			traces[a.Fingerprint], order = t, append(order, a.Fingerprint)
		}
		t.Observe(batch, a)
	}
	var changes []Change
	for _, fp := range order {
		if c := traces[fp].Change; c.Batch == batch {
			changes = append(changes, c)
		}
	}
	inc.Absorb(changes)
}

// newBatch names an in-memory batch, different from every batch the incident absorbed: the
// timeline grows with each one that counted anything.
func newBatch(inc *Incident) string {
	return fmt.Sprintf("memory-%d-%d", len(inc.Timeline), time.Now().UnixNano())
}

func powerOfTen(n int) bool {
	for n >= 10 && n%10 == 0 {
		n /= 10
	}
	return n == 1
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
