package dpop

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/go-jose/go-jose/v4"
)

// maxRetiringKeys bounds how many retiring public keys a KeySet keeps; when
// a rotation exceeds it, the oldest retiring key is dropped.
const maxRetiringKeys = 8

// maxKeyFileBytes bounds a key file read by LoadKeySet.
const maxKeyFileBytes = 1 << 20

// KeySet is the signing key set of a Service or an Authority: one current
// private key that signs new assertions, plus the public keys of retiring
// keys. JWKS publishes all of them, so assertions signed just before a
// rotation still verify until their keys are removed.
//
// A KeySet is safe for concurrent use. The zero KeySet has no key: it
// publishes an empty JWKS and cannot sign until Rotate gives it one, and
// the roles' New refuses it.
type KeySet struct {
	mu       sync.RWMutex
	current  *Key
	retiring []jose.JSONWebKey // newest first
}

// NewKeySet returns a KeySet signing with current and publishing the
// retiring public keys too. Retiring keys without a kid get their
// thumbprint as kid; kids must be unique.
func NewKeySet(current *Key, retiring ...jose.JSONWebKey) (*KeySet, error) {
	if current == nil {
		return nil, newErr(ErrInvalidKey, "nil current key")
	}
	if len(retiring) > maxRetiringKeys {
		return nil, newErr(ErrInvalidKey, fmt.Sprintf("more than %d retiring keys", maxRetiringKeys))
	}
	s := &KeySet{current: current}
	seen := map[string]bool{current.kid: true}
	for i := range retiring {
		k, err := publicKeyEntry(retiring[i])
		if err != nil {
			return nil, err
		}
		if seen[k.KeyID] {
			return nil, newErr(ErrInvalidKey, "duplicate kid "+k.KeyID)
		}
		seen[k.KeyID] = true
		s.retiring = append(s.retiring, k)
	}
	return s, nil
}

// publicKeyEntry checks a JWK and returns its public half with kid, use
// and alg filled in.
func publicKeyEntry(in jose.JSONWebKey) (jose.JSONWebKey, error) {
	k := in.Public()
	if err := checkPublicJWK(&k); err != nil {
		return jose.JSONWebKey{}, err
	}
	if k.KeyID == "" {
		t, err := Thumbprint(&k)
		if err != nil {
			return jose.JSONWebKey{}, err
		}
		k.KeyID = t
	}
	if k.Use == "" {
		k.Use = "sig"
	}
	if k.Algorithm == "" {
		k.Algorithm = string(defaultAlgorithm(k.Key))
	}
	k.Certificates, k.CertificatesURL = nil, nil
	k.CertificateThumbprintSHA1, k.CertificateThumbprintSHA256 = nil, nil
	return k, nil
}

// GenerateKeySet returns a KeySet with a fresh ES256 key, for development
// and tests. Production keys belong in files ([LoadKeySet]) or a KMS
// ([NewKey] with the KMS's crypto.Signer).
func GenerateKeySet() (*KeySet, error) {
	k, err := GenerateKey("ES256")
	if err != nil {
		return nil, err
	}
	return NewKeySet(k)
}

// Current returns the key that signs new assertions.
func (s *KeySet) Current() *Key {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.current
}

// JWKS returns the public keys to publish at jwks_uri: the current key
// first, then the retiring keys, newest first. It never contains private
// members.
func (s *KeySet) JWKS() jose.JSONWebKeySet {
	s.mu.RLock()
	defer s.mu.RUnlock()
	keys := make([]jose.JSONWebKey, 0, 1+len(s.retiring))
	if s.current != nil {
		keys = append(keys, s.current.Public())
	}
	keys = append(keys, s.retiring...)
	return jose.JSONWebKeySet{Keys: keys}
}

// PublicKey returns the published public key with the given kid.
func (s *KeySet) PublicKey(kid string) (jose.JSONWebKey, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.current != nil && s.current.kid == kid {
		return s.current.Public(), true
	}
	for _, k := range s.retiring {
		if k.KeyID == kid {
			return k, true
		}
	}
	return jose.JSONWebKey{}, false
}

// Rotate makes next the current key and keeps the previous current key's
// public half as the newest retiring key, so tokens it signed keep
// verifying. At most 8 retiring keys are kept (the oldest is
// dropped). A nil next is ignored; rotating to a key already in the set
// promotes it.
func (s *KeySet) Rotate(next *Key) {
	if next == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == nil || next.kid == s.current.kid {
		s.current = next // the zero KeySet gets its first key
		return
	}
	prev := s.current.Public()
	kept := make([]jose.JSONWebKey, 0, len(s.retiring)+1)
	kept = append(kept, prev)
	for _, k := range s.retiring {
		if k.KeyID != next.kid {
			kept = append(kept, k)
		}
	}
	if len(kept) > maxRetiringKeys {
		kept = kept[:maxRetiringKeys]
	}
	s.current, s.retiring = next, kept
}

// Remove drops the retiring key with the given kid, typically once every
// token it signed has expired. It reports whether a key was removed; the
// current key is never removed.
func (s *KeySet) Remove(kid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, k := range s.retiring {
		if k.KeyID == kid {
			s.retiring = append(s.retiring[:i:i], s.retiring[i+1:]...)
			return true
		}
	}
	return false
}

// LoadKeySet reads keys from files. The first file is the current signing
// key and must hold a private key; the others may hold private or public
// keys and are published as retiring keys. Each file is PEM ("PRIVATE KEY"
// PKCS#8, "EC PRIVATE KEY" SEC1, "RSA PRIVATE KEY" PKCS#1, or "PUBLIC KEY"
// PKIX for retiring keys) or a single JWK in JSON. A JWK's kid and alg are
// kept; PEM keys get their thumbprint as kid and the natural algorithm of
// the key.
func LoadKeySet(paths ...string) (*KeySet, error) {
	if len(paths) == 0 {
		return nil, newErr(ErrInvalidKey, "no key files")
	}
	var (
		current  *Key
		retiring []jose.JSONWebKey
	)
	for i, p := range paths {
		priv, pub, err := loadKeyFile(p)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			if priv == nil {
				return nil, newErr(ErrInvalidKey, "first key file must hold a private key")
			}
			current = priv
			continue
		}
		retiring = append(retiring, pub)
	}
	return NewKeySet(current, retiring...)
}

// loadKeyFile returns the key in a file: priv is set for private keys, pub
// always holds the public JWK.
func loadKeyFile(path string) (*Key, jose.JSONWebKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, jose.JSONWebKey{}, wrapErr(ErrInvalidKey, "reading key file", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, jose.JSONWebKey{}, wrapErr(ErrInvalidKey, "reading key file", err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, jose.JSONWebKey{}, newErr(ErrInvalidKey, "key file too large")
	}
	return ParseKey(data)
}

// ParseKey parses one key in any format LoadKeySet reads. For a private key
// it returns the Key and its public JWK; for a public key only the JWK.
func ParseKey(data []byte) (*Key, jose.JSONWebKey, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return parseJWKKey(trimmed)
	}
	block, _ := pem.Decode(trimmed)
	if block == nil {
		return nil, jose.JSONWebKey{}, newErr(ErrInvalidKey, "neither PEM nor JWK")
	}
	var parsed any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PUBLIC KEY":
		parsed, err = x509.ParsePKIXPublicKey(block.Bytes)
	default:
		return nil, jose.JSONWebKey{}, newErr(ErrInvalidKey, fmt.Sprintf("unsupported PEM block %q", block.Type))
	}
	if err != nil {
		return nil, jose.JSONWebKey{}, wrapErr(ErrInvalidKey, "parsing PEM "+block.Type, err)
	}
	return keyFrom(parsed, "", "")
}

func parseJWKKey(raw []byte) (*Key, jose.JSONWebKey, error) {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return nil, jose.JSONWebKey{}, wrapErr(ErrInvalidKey, "malformed JWK", err)
	}
	if !jwk.Valid() {
		return nil, jose.JSONWebKey{}, newErr(ErrInvalidKey, "invalid JWK")
	}
	return keyFrom(jwk.Key, jwk.Algorithm, jwk.KeyID)
}

func keyFrom(k any, alg, kid string) (*Key, jose.JSONWebKey, error) {
	switch k := k.(type) {
	case *ecdsa.PrivateKey, ed25519.PrivateKey, *rsa.PrivateKey:
		key, err := NewKey(k.(crypto.Signer), alg, kid)
		if err != nil {
			return nil, jose.JSONWebKey{}, err
		}
		return key, key.Public(), nil
	case *ecdsa.PublicKey, ed25519.PublicKey, *rsa.PublicKey:
		pub, err := publicKeyEntry(jose.JSONWebKey{Key: k, Algorithm: alg, KeyID: kid})
		if err != nil {
			return nil, jose.JSONWebKey{}, err
		}
		return nil, pub, nil
	default:
		return nil, jose.JSONWebKey{}, newErr(ErrInvalidKey, fmt.Sprintf("unsupported key type %T", k))
	}
}
