package queue

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/remediator/remediator"
)

// guardedHistory is how many values of each guarded key the bucket keeps: the last one is
// what a restore writes back, the older ones are there for an operator who finds that the
// last value before a delete was already a bad one.
const guardedHistory = 5

// maxGuardedKey bounds a bucket key, which becomes part of a NATS subject and must fit the
// protocol's control line; a longer etcd key is stored under its hash.
const maxGuardedKey = 512

// Guarded keeps the last values of the etcd keys remediator guards, so that a key that
// disappears can be written back. It stores what it is given, as it is: the guard owns the
// format.
type Guarded struct {
	kv jetstream.KeyValue
	// maxPayload is the NATS server's limit on one message, which a value must fit.
	maxPayload func() int64
}

// guardedKey names the cluster's etcd key in the bucket. etcd keys hold any byte, and a
// bucket key only letters, digits and "-/_=.", with "." between tokens: both parts are
// base64url, which never holds a "." or a "=", so no two keys meet and a hashed one (under
// "sha256=") meets none.
func guardedKey(cluster, key string) (string, error) {
	if cluster == "" || key == "" {
		return "", remediator.Errorf(remediator.EINVALID, "queue: a guarded key needs a cluster and a key")
	}
	k := base64.RawURLEncoding.EncodeToString([]byte(cluster)) + "." + base64.RawURLEncoding.EncodeToString([]byte(key))
	if len(k) > maxGuardedKey {
		sum := sha256.Sum256([]byte(cluster + "\x00" + key))
		k = "sha256=" + hex.EncodeToString(sum[:])
	}
	return k, nil
}

// Put stores data as the newest value of the cluster's key; data over the NATS server's
// max_payload is ETOOLARGE.
func (g *Guarded) Put(ctx context.Context, cluster, key string, data []byte) error {
	k, err := guardedKey(cluster, key)
	if err != nil {
		return err
	}
	if max := g.maxPayload(); int64(len(data)) > max {
		return remediator.Errorf(remediator.ETOOLARGE, "queue: the value of guarded key %q of cluster %q is %d bytes, over the NATS server's max_payload of %d", key, cluster, len(data), max)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if _, err := g.kv.Put(ctx, k, data); err != nil {
		return unavailable("save guarded key %s", key, err)
	}
	return nil
}

// Get returns the newest value stored of the cluster's key, or ENOTFOUND if there is none.
func (g *Guarded) Get(ctx context.Context, cluster, key string) ([]byte, error) {
	k, err := guardedKey(cluster, key)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	e, err := g.kv.Get(ctx, k)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, remediator.Errorf(remediator.ENOTFOUND, "queue: no value saved of guarded key %q of cluster %q", key, cluster)
	case err != nil:
		return nil, unavailable("read guarded key %s", key, err)
	}
	return e.Value(), nil
}
