package jwtcheck

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// algorithms is the allow-list of every kind: asymmetric only, so neither
// "none" nor an HMAC keyed with a public key can pass.
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.RS256, jose.PS256}

// MinRSABits is the smallest RSA modulus accepted.
const MinRSABits = 2048

// maxRSABits is the largest RSA modulus accepted: a DPoP key is chosen by
// the caller, and verification cost grows with the modulus.
const maxRSABits = 4096

// rsaExponent is the only public exponent accepted, for the same reason:
// verification cost grows with the exponent's size (2^31-1 costs 2.5 times
// as much as 65537 on a 4096-bit key).
const rsaExponent = 65537

// Algorithms returns the allow-list (a copy: callers cannot widen it).
func Algorithms() []jose.SignatureAlgorithm { return slices.Clone(algorithms) }

// Allowed reports whether alg is in the allow-list.
func Allowed(alg jose.SignatureAlgorithm) bool { return slices.Contains(algorithms, alg) }

// KeyFits reports whether pub is a supported public key (P-256, P-384,
// Ed25519, RSA of 2048 to 4096 bits with exponent 65537) that alg can
// verify with: the curve must be the algorithm's, so a token cannot pick a
// weaker pairing, and an RSA key cannot make verification expensive.
func KeyFits(pub crypto.PublicKey, alg jose.SignatureAlgorithm) bool {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		return alg == jose.ES256 && p.Curve == elliptic.P256() || alg == jose.ES384 && p.Curve == elliptic.P384()
	case ed25519.PublicKey:
		return alg == jose.EdDSA && len(p) == ed25519.PublicKeySize
	case *rsa.PublicKey:
		return (alg == jose.RS256 || alg == jose.PS256) && p.N != nil &&
			p.N.BitLen() >= MinRSABits && p.N.BitLen() <= maxRSABits && p.E == rsaExponent
	}
	return false
}

// CheckKey applies the key rules to a verification key before it is used:
// present, public, meant for signatures, its own alg (when it names one)
// equal to alg, and fitting alg.
func CheckKey(key *jose.JSONWebKey, alg jose.SignatureAlgorithm) error {
	switch {
	case key == nil || key.Key == nil:
		return fail("no key")
	case !Allowed(alg):
		return fail(fmt.Sprintf("alg %q not allowed", truncate(string(alg), 16)))
	case key.Use != "" && key.Use != "sig":
		return fail("key is not a signing key")
	case !KeyFits(key.Key, alg):
		return fail(fmt.Sprintf("alg %s does not fit the key", alg))
	case key.Algorithm != "" && key.Algorithm != string(alg):
		return fail("alg differs from the key's alg")
	}
	return nil
}

// Verify checks the signature of t with key (after CheckKey). Only a
// verified token's claims may be trusted, and only a verified token can be
// recorded in a replay cache.
func (t *Token) Verify(key *jose.JSONWebKey) error {
	if err := CheckKey(key, t.Alg); err != nil {
		return err
	}
	if !verifySignature(key.Key, t.Alg, t.input, t.sig) {
		return fail("bad signature")
	}
	t.verified = true
	return nil
}

// Verified reports whether Verify succeeded.
func (t *Token) Verified() bool { return t.verified }

func verifySignature(pub crypto.PublicKey, alg jose.SignatureAlgorithm, input, sig []byte) bool {
	switch alg {
	case jose.ES256, jose.ES384:
		p, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		size := (p.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		// The DER form ecdsa.Verify would build from two big.Ints, built
		// on the stack (FuzzRawToDER).
		var buf [3 + 2*(2+1+66)]byte
		der, ok := rawToDER(buf[:0], sig)
		if !ok {
			return false
		}
		if alg == jose.ES256 {
			h := sha256.Sum256(input)
			return ecdsa.VerifyASN1(p, h[:], der)
		}
		h := sha512.Sum384(input)
		return ecdsa.VerifyASN1(p, h[:], der)
	case jose.EdDSA:
		p, ok := pub.(ed25519.PublicKey)
		return ok && ed25519.Verify(p, input, sig)
	case jose.RS256, jose.PS256:
		p, ok := pub.(*rsa.PublicKey)
		if !ok {
			return false
		}
		h := sha256.Sum256(input)
		if alg == jose.RS256 {
			return rsa.VerifyPKCS1v15(p, crypto.SHA256, h[:], sig) == nil
		}
		// Any salt length, as go-jose accepts: keys signing through
		// crypto.Signer (KMS, HSM, our own cryptosigner) may use the
		// longest salt rather than RFC 7518's hash-sized one.
		return rsa.VerifyPSS(p, crypto.SHA256, h[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil
	}
	return false
}

// rawToDER appends the DER ECDSA-Sig-Value of the JWS signature r||s (two
// halves of equal length) to dst, as ecdsa.Verify encodes r and s: minimal
// unsigned integers. A zero r or s is refused, as ecdsa.Verify refuses it.
func rawToDER(dst, sig []byte) ([]byte, bool) {
	half := len(sig) / 2
	r, s := trimZeros(sig[:half]), trimZeros(sig[half:])
	if len(sig)%2 != 0 || len(r) == 0 || len(s) == 0 || half > 66 {
		return nil, false
	}
	n := intLen(r) + intLen(s)
	if n < 0x80 {
		dst = append(dst, 0x30, byte(n))
	} else {
		dst = append(dst, 0x30, 0x81, byte(n))
	}
	return appendInt(appendInt(dst, r), s), true
}

func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// intLen is the DER length of a positive integer's TLV.
func intLen(b []byte) int {
	if b[0]&0x80 != 0 {
		return 2 + 1 + len(b)
	}
	return 2 + len(b)
}

func appendInt(dst, b []byte) []byte {
	if b[0]&0x80 != 0 {
		dst = append(dst, 0x02, byte(len(b)+1), 0)
	} else {
		dst = append(dst, 0x02, byte(len(b)))
	}
	return append(dst, b...)
}

// TimeRules bound a token's times.
type TimeRules struct {
	// Skew is the clock leeway applied to exp, iat and nbf.
	Skew time.Duration
	// MaxLifetime, when positive, bounds exp - iat.
	MaxLifetime time.Duration
	// MaxAge, when positive, bounds now - iat (kinds without a required
	// exp).
	MaxAge time.Duration
}

// CheckTimes checks the claims' times at now under the profile's exp rule:
// iat is required and not beyond Skew in the future; exp, when present, is
// not passed (with Skew) and after iat, and exp - iat is at most
// MaxLifetime; nbf, when present, is not beyond Skew in the future; the age
// is below MaxAge + Skew.
func CheckTimes(t *Token, now time.Time, r TimeRules) error {
	c := &t.Claims
	if c.IssuedAt == nil {
		return fail("missing iat")
	}
	switch t.Profile.Exp {
	case ExpRequired:
		if c.Expiry == nil {
			return fail("missing exp")
		}
	case ExpForbidden:
		if c.Expiry != nil {
			return fail("exp not allowed in a " + t.Profile.Name)
		}
	}
	iat := c.IssuedAt.Time()
	if c.Expiry != nil && !now.Before(c.Expiry.Time().Add(r.Skew)) {
		return fail("expired")
	}
	if iat.After(now.Add(r.Skew)) {
		return fail("iat in the future")
	}
	if c.NotBefore != nil && c.NotBefore.Time().After(now.Add(r.Skew)) {
		return fail("not yet valid (nbf)")
	}
	// Accepted only strictly before iat + MaxAge + Skew, the instant a
	// replay record kept until then expires.
	if r.MaxAge > 0 && !now.Before(iat.Add(r.MaxAge+r.Skew)) {
		return fail("too old")
	}
	if c.Expiry != nil && r.MaxLifetime > 0 {
		exp := c.Expiry.Time()
		if !exp.After(iat) {
			return fail("exp not after iat")
		}
		if exp.Sub(iat) > r.MaxLifetime {
			return fail("lifetime exceeds maximum")
		}
	}
	return nil
}

// ReplayCache is the replay store every kind shares; dpop.ReplayCache has
// the same method set.
type ReplayCache interface {
	Seen(ctx context.Context, issuer, jti string, exp time.Time) (replayed bool, err error)
}

// Record is the last step of a verification: it records (issuer, jti)
// until until, and fails on a jti already recorded. It refuses a token
// whose signature has not been verified, so that only tokens that passed
// every trust check can take space in the cache. A cache failure is
// returned wrapped, not as an *Error: the caller should answer "try
// again", not "invalid token".
func (t *Token) Record(ctx context.Context, cache ReplayCache, issuer string, until time.Time) error {
	switch {
	case !t.verified:
		return fail("replay step before the signature check")
	case cache == nil:
		return fail("no replay cache")
	case t.Claims.ID == "":
		return fail("missing jti")
	}
	replayed, err := cache.Seen(ctx, issuer, t.Claims.ID, until)
	if err != nil {
		return fmt.Errorf("replay check: %w", err)
	}
	if replayed {
		return failWith("jti replayed", ErrReplay)
	}
	return nil
}
