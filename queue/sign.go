package queue

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/remediator/remediator"
)

// Headers of a signed message: the signer's public nkey, and its ed25519 signature over the
// subject and the body (signedBytes), so that a signed message cannot be moved to another
// subject or changed.
const (
	headerKey       = "Remediator-Key"
	headerSignature = "Remediator-Signature"
)

// signedBytes is what a signature covers.
func signedBytes(subject string, data []byte) []byte {
	b := make([]byte, 0, len("remediator/1\n")+len(subject)+1+len(data))
	b = append(b, "remediator/1\n"...)
	b = append(b, subject...)
	b = append(b, '\n')
	return append(b, data...)
}

// signer signs with an nkey user's ed25519 key, derived from its seed once: nkeys derives it
// again on every Sign, which costs more than the publish it signs.
type signer struct {
	pub  string
	priv ed25519.PrivateKey
}

func newSigner(key nkeys.KeyPair) (*signer, error) {
	pub, err := key.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("queue: signing key: %w", err)
	}
	seed, err := key.Seed()
	if err != nil {
		return nil, fmt.Errorf("queue: signing key: %w", err)
	}
	_, raw, err := nkeys.DecodeSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("queue: signing key: %w", err)
	}
	return &signer{pub: pub, priv: ed25519.NewKeyFromSeed(raw)}, nil
}

// sign adds the signer's key and signature over subject and data to h.
func (s *signer) sign(h nats.Header, subject string, data []byte) {
	h.Set(headerKey, s.pub)
	h.Set(headerSignature, base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.priv, signedBytes(subject, data))))
}

// verify checks that h carries a valid signature over subject and data by one of the trusted
// public keys. Anything else is EFORBIDDEN, saying why.
func verify(h nats.Header, subject string, data []byte, trusted func(pub string) bool) error {
	pub, encoded := h.Get(headerKey), h.Get(headerSignature)
	if pub == "" || encoded == "" {
		return remediator.Errorf(remediator.EFORBIDDEN, "unsigned: no %s header", headerSignature)
	}
	if !trusted(pub) {
		return remediator.Errorf(remediator.EFORBIDDEN, "signed by %s, which is not a trusted key", pub)
	}
	sig, err := base64.RawURLEncoding.DecodeString(encoded)
	if err != nil {
		return remediator.Errorf(remediator.EFORBIDDEN, "malformed signature")
	}
	raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(pub))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return remediator.Errorf(remediator.EFORBIDDEN, "malformed signing key %q", pub)
	}
	if !ed25519.Verify(ed25519.PublicKey(raw), signedBytes(subject, data), sig) {
		return remediator.Errorf(remediator.EFORBIDDEN, "the signature by %s does not match the message: forged or altered", pub)
	}
	return nil
}

// publicKey is the public key of a key pair, which a valid user key always has.
func publicKey(key nkeys.KeyPair) string {
	pub, _ := key.PublicKey()
	return pub
}
