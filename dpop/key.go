package dpop

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"sync"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/agentpass-go/agentpass/internal/jwtcheck"
)

// algorithms lists the JWS algorithms this package signs with and accepts:
// asymmetric only, never "none" (no signature) and never HMAC (a public key
// used as a shared secret would let anyone sign). ES256 is the default and
// the one every peer must support. It is informational: verifiers use their
// own copy, so changing this slice cannot weaken them.
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.RS256, jose.PS256}

// minRSABits is the smallest RSA modulus accepted for signing or verifying.
const minRSABits = 2048

// maxJWKBytes bounds the size of a JWK we parse (a 4096-bit RSA key is
// about 800 bytes).
const maxJWKBytes = 8 << 10

// privateJWKMembers are the JWK members only private or symmetric keys
// carry (RFC 7518 §6).
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// Key is a private signing key with its algorithm and public JWK. Harnesses
// use an ephemeral Key per task for holder binding (harness.cnf.jwk); Services
// and Authorities use Keys inside a [KeySet]. The private key is only ever
// used through [crypto.Signer], so keys held in a KMS or HSM work.
//
// A Key is immutable and safe for concurrent use.
type Key struct {
	signer  crypto.Signer
	opaque  jose.OpaqueSigner
	alg     jose.SignatureAlgorithm
	kid     string
	thumb   string
	pub     jose.JSONWebKey
	pubJSON json.RawMessage
}

// GenerateKey creates a fresh key for alg: "ES256" (P-256, the default when
// alg is empty), "ES384" (P-384), "EdDSA" (Ed25519), "RS256" or "PS256"
// (2048-bit RSA). Its kid is its RFC 7638 thumbprint.
func GenerateKey(alg string) (*Key, error) {
	var (
		signer crypto.Signer
		err    error
	)
	switch jose.SignatureAlgorithm(alg) {
	case "", jose.ES256:
		alg = string(jose.ES256)
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.EdDSA:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	case jose.RS256, jose.PS256:
		signer, err = rsa.GenerateKey(rand.Reader, minRSABits)
	default:
		return nil, newErr(ErrInvalidKey, fmt.Sprintf("unsupported algorithm %q", alg))
	}
	if err != nil {
		return nil, wrapErr(ErrInvalidKey, "generating key", err)
	}
	return NewKey(signer, alg, "")
}

// NewKey wraps a crypto.Signer (an *ecdsa.PrivateKey, ed25519.PrivateKey,
// *rsa.PrivateKey, or a KMS/HSM handle whose Public method returns one of
// their public keys). alg may be empty to pick the natural algorithm of the
// key (ES256 for P-256, ES384 for P-384, EdDSA for Ed25519, RS256 for RSA);
// otherwise it must be one of ES256, ES384, EdDSA, RS256 and PS256 and fit the key. kid may be empty to
// use the key's RFC 7638 thumbprint.
func NewKey(signer crypto.Signer, alg, kid string) (*Key, error) {
	if signer == nil {
		return nil, newErr(ErrInvalidKey, "nil signer")
	}
	pub := signer.Public()
	a := jose.SignatureAlgorithm(alg)
	if a == "" {
		a = defaultAlgorithm(pub)
		if a == "" {
			return nil, newErr(ErrInvalidKey, fmt.Sprintf("unsupported key type %T", pub))
		}
	}
	if err := checkKeyAlg(pub, a); err != nil {
		return nil, err
	}
	jwk := jose.JSONWebKey{Key: pub, Algorithm: string(a), Use: "sig"}
	thumb, err := Thumbprint(&jwk)
	if err != nil {
		return nil, err
	}
	if kid == "" {
		kid = thumb
	}
	jwk.KeyID = kid
	raw, err := jwk.MarshalJSON()
	if err != nil {
		return nil, wrapErr(ErrInvalidKey, "encoding public JWK", err)
	}
	return &Key{
		signer:  signer,
		opaque:  cryptosigner.Opaque(signer),
		alg:     a,
		kid:     kid,
		thumb:   thumb,
		pub:     jwk,
		pubJSON: raw,
	}, nil
}

// Public returns the public JWK (with kid, alg and use "sig").
func (k *Key) Public() jose.JSONWebKey { return k.pub }

// PublicJSON returns the public JWK as JSON, ready for pass.Cnf.JWK. The
// returned slice is a copy.
func (k *Key) PublicJSON() json.RawMessage { return bytes.Clone(k.pubJSON) }

// Thumbprint returns the key's RFC 7638 JWK thumbprint (base64url SHA-256,
// no padding), which is also the "jkt" of RFC 9449.
func (k *Key) Thumbprint() string { return k.thumb }

// KeyID returns the key's kid.
func (k *Key) KeyID() string { return k.kid }

// Algorithm returns the JWS algorithm the key signs with.
func (k *Key) Algorithm() string { return string(k.alg) }

// Signer returns the underlying crypto.Signer.
func (k *Key) Signer() crypto.Signer { return k.signer }

// ParsePublicJWK parses a public JWK as found in cnf.jwk or a JWKS. It
// rejects JWKs with private or symmetric members (a key meant to be public
// must not carry a secret), unsupported key types
// and curves (only P-256, P-384, Ed25519 and RSA of at least 2048 bits),
// points not on their curve, a "use" other than "sig", and an "alg" member
// outside ES256, ES384, EdDSA, RS256 and PS256 or not fitting the key. Errors match [ErrInvalidKey].
func ParsePublicJWK(raw json.RawMessage) (*jose.JSONWebKey, error) {
	k, err := sharedPublicJWK(raw)
	if err != nil {
		return nil, err
	}
	return copyPublicJWK(k), nil
}

// copyPublicJWK is a copy of the memo's key that shares nothing a caller
// could change with it: the key material is copied too, so wiping or
// editing a returned key in place cannot alter what later parses of the
// same JWK (and the proof checks verifying with the memo's key) see.
func copyPublicJWK(k *jose.JSONWebKey) *jose.JSONWebKey {
	c := *k
	switch pub := k.Key.(type) {
	case *ecdsa.PublicKey:
		// The key parsed and was checked on its curve, so its encoding
		// parses again.
		if b, err := pub.Bytes(); err == nil {
			if cp, err := ecdsa.ParseUncompressedPublicKey(pub.Curve, b); err == nil {
				c.Key = cp
			}
		}
	case ed25519.PublicKey:
		c.Key = slices.Clone(pub)
	case *rsa.PublicKey:
		c.Key = &rsa.PublicKey{N: new(big.Int).Set(pub.N), E: pub.E}
	}
	c.Certificates = slices.Clone(k.Certificates)
	c.CertificateThumbprintSHA1 = slices.Clone(k.CertificateThumbprintSHA1)
	c.CertificateThumbprintSHA256 = slices.Clone(k.CertificateThumbprintSHA256)
	return &c
}

// sharedPublicJWK is ParsePublicJWK without the caller's copy: the key is
// the memo's own, so callers only read it (verify a signature with it) and
// never return or change it.
func sharedPublicJWK(raw json.RawMessage) (*jose.JSONWebKey, error) {
	m, err := memoPublicJWK(raw)
	if err != nil {
		return nil, err
	}
	return m.key, nil
}

// memoPublicJWK returns the memo's entry for raw, parsing it first if it
// is not there.
func memoPublicJWK(raw json.RawMessage) (*memoJWK, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, newErr(ErrInvalidKey, "empty JWK")
	}
	if len(raw) > maxJWKBytes {
		return nil, newErr(ErrInvalidKey, "JWK too large")
	}
	if m := publicJWKs.get(raw); m != nil {
		return m, nil
	}
	k, err := parsePublicJWK(raw)
	if err != nil {
		return nil, err
	}
	return publicJWKs.put(raw, k), nil
}

// parsePublicJWK is ParsePublicJWK's parse of a trimmed, bounded JWK.
func parsePublicJWK(raw []byte) (*jose.JSONWebKey, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, newErr(ErrInvalidKey, "JWK is not a JSON object")
	}
	for _, m := range privateJWKMembers {
		if _, ok := members[m]; ok {
			return nil, newErr(ErrInvalidKey, "JWK has private member "+m)
		}
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return nil, wrapErr(ErrInvalidKey, "malformed JWK", err)
	}
	if err := checkPublicJWK(&jwk); err != nil {
		return nil, err
	}
	return &jwk, nil
}

// Bounds of the memo of parsed public keys: past either, it starts again
// empty. A Harness holds its holder and DPoP keys across many passes and
// proofs, so a few keys are nearly every lookup; a flood of new keys costs
// the parse it cost without the memo, and never more memory than this.
const (
	maxMemoJWKs     = 1024
	maxMemoJWKBytes = 1 << 20
)

// jwkMemo keeps the result of ParsePublicJWK by the JWK's exact bytes (the
// parse decodes the JSON twice by reflection, about 30 allocations). Only
// accepted keys are kept; ParsePublicJWK's callers get their own copy of
// the JSONWebKey, whose key and certificates are never changed in place.
type jwkMemo struct {
	mu    sync.Mutex
	m     map[string]*memoJWK
	bytes int
}

// memoJWK is an accepted key and, once asked for, its RFC 7638 thumbprint:
// a DPoP key is presented with every proof, and its thumbprint is a JSON
// encoding and a hash each time otherwise.
type memoJWK struct {
	key  *jose.JSONWebKey
	once sync.Once
	jkt  string
	err  error
}

// thumbprint returns Thumbprint(m.key), computed once.
func (m *memoJWK) thumbprint() (string, error) {
	m.once.Do(func() { m.jkt, m.err = Thumbprint(m.key) })
	return m.jkt, m.err
}

var publicJWKs jwkMemo

// get returns the entry of the key parsed from raw, or nil. Its key is
// shared: see sharedPublicJWK.
func (j *jwkMemo) get(raw []byte) *memoJWK {
	j.mu.Lock()
	m := j.m[string(raw)]
	j.mu.Unlock()
	return m
}

// put keeps k under raw and returns the entry now kept (an earlier one
// when another caller parsed the same bytes first).
func (j *jwkMemo) put(raw []byte, k *jose.JSONWebKey) *memoJWK {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.m == nil || len(j.m) >= maxMemoJWKs || j.bytes+len(raw) > maxMemoJWKBytes {
		j.m, j.bytes = make(map[string]*memoJWK), 0
	}
	if m, ok := j.m[string(raw)]; ok {
		return m
	}
	m := &memoJWK{key: k}
	j.m[string(raw)] = m
	j.bytes += len(raw)
	return m
}

// checkPublicJWK applies the ParsePublicJWK rules to an already decoded key.
func checkPublicJWK(jwk *jose.JSONWebKey) error {
	if jwk == nil || !jwk.Valid() || !jwk.IsPublic() {
		return newErr(ErrInvalidKey, "not a public asymmetric key")
	}
	if err := checkKeyType(jwk.Key); err != nil {
		return err
	}
	if jwk.Use != "" && jwk.Use != "sig" {
		return newErr(ErrInvalidKey, fmt.Sprintf("JWK use %q is not sig", jwk.Use))
	}
	if jwk.Algorithm != "" {
		if err := checkKeyAlg(jwk.Key, jose.SignatureAlgorithm(jwk.Algorithm)); err != nil {
			return err
		}
	}
	return nil
}

// Thumbprint returns the RFC 7638 thumbprint of a public (or private) JWK:
// base64url, no padding, of the SHA-256 of its canonical required members.
func Thumbprint(jwk *jose.JSONWebKey) (string, error) {
	if jwk == nil {
		return "", newErr(ErrInvalidKey, "nil JWK")
	}
	if err := checkKeyType(publicOf(jwk.Key)); err != nil {
		return "", err
	}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", wrapErr(ErrInvalidKey, "thumbprint", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// SameKey reports whether two JSON JWKs are the same public key, comparing
// RFC 7638 thumbprints (never JSON text, so member order, extra members
// such as kid, and whitespace do not matter). Invalid or private JWKs are
// never the same as anything.
func SameKey(a, b json.RawMessage) bool {
	ta, err := thumbprintJSON(a)
	if err != nil {
		return false
	}
	tb, err := thumbprintJSON(b)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(ta), []byte(tb)) == 1
}

func thumbprintJSON(raw json.RawMessage) (string, error) {
	jwk, err := ParsePublicJWK(raw)
	if err != nil {
		return "", err
	}
	return Thumbprint(jwk)
}

func publicOf(k any) any {
	if s, ok := k.(crypto.Signer); ok {
		return s.Public()
	}
	return k
}

// checkKeyType accepts the key types and sizes we support.
func checkKeyType(pub any) error {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() && p.Curve != elliptic.P384() {
			return newErr(ErrInvalidKey, "unsupported elliptic curve")
		}
	case ed25519.PublicKey:
		if len(p) != ed25519.PublicKeySize {
			return newErr(ErrInvalidKey, "bad Ed25519 key size")
		}
	case *rsa.PublicKey:
		if p.N == nil || p.N.BitLen() < minRSABits {
			return newErr(ErrInvalidKey, fmt.Sprintf("RSA key shorter than %d bits", minRSABits))
		}
	default:
		return newErr(ErrInvalidKey, fmt.Sprintf("unsupported key type %T", pub))
	}
	return nil
}

func defaultAlgorithm(pub crypto.PublicKey) jose.SignatureAlgorithm {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		switch p.Curve {
		case elliptic.P256():
			return jose.ES256
		case elliptic.P384():
			return jose.ES384
		}
	case ed25519.PublicKey:
		return jose.EdDSA
	case *rsa.PublicKey:
		return jose.RS256
	}
	return ""
}

// checkKeyAlg reports whether alg is allowed and fits the public key.
func checkKeyAlg(pub crypto.PublicKey, alg jose.SignatureAlgorithm) error {
	if !allowed(alg) {
		return newErr(ErrInvalidKey, fmt.Sprintf("algorithm %q not allowed", alg))
	}
	if err := checkKeyType(pub); err != nil {
		return err
	}
	if !algFits(pub, alg) {
		return newErr(ErrInvalidKey, fmt.Sprintf("algorithm %s does not fit the key", alg))
	}
	return nil
}

// algFits and allowed apply the module's one allow-list and key-fit rule.
func algFits(pub crypto.PublicKey, alg jose.SignatureAlgorithm) bool {
	return jwtcheck.KeyFits(pub, alg)
}

func allowed(alg jose.SignatureAlgorithm) bool { return jwtcheck.Allowed(alg) }
