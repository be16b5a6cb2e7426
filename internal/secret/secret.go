// Package secret makes and handles the opaque secrets of the protocol:
// AgentPass values, request ids, bearer tokens, initialization tokens.
//
// # Overview
//
// [Token] and [ID] mint secrets from crypto/rand; stores keep only their
// [Hash], so a leaked database does not leak usable credentials; [Equal]
// compares in constant time, so response timing reveals nothing of a
// secret.
//
// # Usage
//
//	value := secret.Token("ap_")      // give to the peer once
//	rec.ValueHash = secret.Hash(value) // store only this
//	...
//	rec, ok := store.Get(secret.Hash(presented))
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"slices"
)

// Sizes in bytes of the values this module mints.
const (
	TokenBytes = 32 // 256 bits: passes, bearer tokens
	IDBytes    = 16 // 128 bits: request ids, authorization ids, init tokens
)

// New returns prefix followed by n random bytes in unpadded base64url.
// It panics only if the system's random source fails, as crypto/rand does.
func New(prefix string, n int) string {
	// The random bytes and the result are built on the stack for the sizes
	// this module mints, so a secret costs one allocation: its string.
	var rb [TokenBytes]byte
	var ob [64]byte
	b := rb[:0]
	if n > len(rb) {
		b = make([]byte, 0, n)
	}
	b = b[:n]
	if _, err := rand.Read(b); err != nil {
		panic("secret: crypto/rand failed: " + err.Error())
	}
	o := append(ob[:0], prefix...)
	m := len(o)
	o = slices.Grow(o, base64.RawURLEncoding.EncodedLen(n))
	o = o[:m+base64.RawURLEncoding.EncodedLen(n)]
	base64.RawURLEncoding.Encode(o[m:], b)
	return string(o)
}

// Token returns a new 256-bit secret with the given prefix.
func Token(prefix string) string { return New(prefix, TokenBytes) }

// ID returns a new 128-bit identifier with the given prefix.
func ID(prefix string) string { return New(prefix, IDBytes) }

// Hash returns the lowercase hex SHA-256 of a secret: the form stores keep.
func Hash(secret string) string {
	sum := Sum(secret)
	return hex.EncodeToString(sum[:])
}

// Sum returns the SHA-256 of a secret. Secrets of up to 512 bytes (every
// token the middleware accepts) are hashed from a stack buffer, so a
// lookup on the request path allocates nothing; the tokens this module
// mints fit a 64-byte one, which is cheaper to clear on every request.
func Sum(secret string) [32]byte {
	switch {
	case len(secret) <= 64:
		var buf [64]byte
		return sha256.Sum256(append(buf[:0], secret...))
	case len(secret) <= 512:
		var buf [512]byte
		return sha256.Sum256(append(buf[:0], secret...))
	}
	return sha256.Sum256([]byte(secret))
}

// Equal compares two secrets in constant time (for equal lengths).
func Equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
