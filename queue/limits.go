package queue

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/remediator/remediator"
)

// Limit bounds one stream or bucket: what it may hold in bytes, and for how long. A stream
// that is full refuses new messages (they are not dropped silently), and a publish to it fails
// with the reason.
type Limit struct {
	MaxBytes int64
	MaxAge   time.Duration
}

// DefaultLimits are the bounds of every stream and bucket, by the short name that
// nats.limits configures. Their sum stays under DefaultMaxStore, as JetStream reserves each
// stream's MaxBytes from the store when it is created.
var DefaultLimits = map[string]Limit{
	"events":    {256 << 20, 7 * 24 * time.Hour},
	"work":      {64 << 20, 30 * 24 * time.Hour},
	"waits":     {64 << 20, 30 * 24 * time.Hour},
	"notify":    {64 << 20, 24 * time.Hour},
	"incidents": {512 << 20, 366 * 24 * time.Hour},
	"evidence":  {512 << 20, 366 * 24 * time.Hour},
	"archive":   {512 << 20, 366 * 24 * time.Hour},
	"index":     {64 << 20, 366 * 24 * time.Hour},
	"runs":      {32 << 20, 366 * 24 * time.Hour},
	"open":      {16 << 20, 366 * 24 * time.Hour},
	"alerts":    {64 << 20, 7 * 24 * time.Hour},
	"locks":     {1 << 20, 0}, // its age is the lock's TTL
	"fences":    {1 << 20, 7 * 24 * time.Hour},
	"seen":      {64 << 20, seenFor},
	"guarded":   {64 << 20, 366 * 24 * time.Hour},
	"signals":   {32 << 20, SignalsKept},
	"meta":      {1 << 20, 0}, // signed_since must outlive every message
	"dead":      {16 << 20, 30 * 24 * time.Hour},
	"pauses":    {1 << 20, 0}, // a pause lasts until it is resumed
}

// DefaultMaxStore is the embedded server's file store: the streams' limits above fit in it,
// and it leaves the rest of the disk to what shares it, such as etcd snapshots.
const DefaultMaxStore int64 = 4 << 30

// limits returns the bounds with overrides applied; an override of a name that is not a
// stream or bucket is an error.
func limits(over map[string]Limit) (map[string]Limit, error) {
	out := maps.Clone(DefaultLimits)
	for name, l := range over {
		d, ok := out[name]
		if !ok {
			return nil, remediator.Errorf(remediator.EINVALID, "nats.limits.%s: no such stream or bucket (known: %s)", name, strings.Join(slices.Sorted(maps.Keys(DefaultLimits)), ", "))
		}
		if l.MaxBytes > 0 {
			d.MaxBytes = l.MaxBytes
		}
		if l.MaxAge > 0 {
			d.MaxAge = l.MaxAge
		}
		out[name] = d
	}
	return out, nil
}

// nats-server's error codes for a store that refused a message, which nats.go does not name.
const (
	errInsufficientResources jetstream.ErrorCode = 10023
	errStoreFailed           jetstream.ErrorCode = 10077 // "maximum bytes exceeded", "maximum messages exceeded"
)

// full turns a publish that a stream refused for its limits into an error that says so: the
// caller answers 503 with it, and nothing is lost that was accepted before.
func full(subject string, err error) error {
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return nil
	}
	switch api.ErrorCode {
	case errStoreFailed, errInsufficientResources:
		return remediator.Errorf(remediator.EUNAVAILABLE, "queue: the stream for %s is full (%s): raise its nats.limits entry or the store's max_store, or let the backlog drain", subject, api.Description)
	}
	return nil
}

// describeLimit is a limit in words, for errors and logs.
func describeLimit(l Limit) string {
	return fmt.Sprintf("max_bytes %d, max_age %s", l.MaxBytes, l.MaxAge)
}
