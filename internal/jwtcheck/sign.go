package jwtcheck

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
)

// Signer is a signing key as Sign needs it. Opaque signers keep KMS and
// HSM keys usable.
type Signer struct {
	// Key signs; nil when Raw is set, which is then wrapped only for the
	// tokens go-jose signs.
	Key   jose.OpaqueSigner
	Alg   jose.SignatureAlgorithm
	KeyID string
	// Raw is the key behind Key, when known: ES256 tokens with a kid are
	// then signed with it directly (the same bytes, less work).
	Raw crypto.Signer
}

// Sign serialises claims (which must encode as a JSON object) and signs
// them as a compact JWS. It is the one place that builds the headers we
// send: typ always, kid unless the public key is embedded (embedJWK, DPoP)
// and a jti claim always, added as 128 random bits when claims lack one, so
// every token we send can be replay-checked by its receiver.
func Sign(s Signer, typ string, embedJWK bool, claims any) (string, error) {
	if s.Key == nil && s.Raw == nil {
		return "", errors.New("jwtcheck: no signing key")
	}
	if typ == "" {
		return "", errors.New("jwtcheck: empty typ")
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("jwtcheck: encoding claims: %w", err)
	}
	id, ok, err := jtiOf(payload)
	if err != nil {
		return "", err
	}
	if !ok || bytes.Equal(id, []byte(`""`)) || bytes.Equal(id, []byte("null")) {
		jti, err := NewJTI()
		if err != nil {
			return "", err
		}
		if !ok {
			payload = appendMember(payload, "jti", jti)
		} else {
			var members map[string]json.RawMessage
			_ = json.Unmarshal(payload, &members) // jtiOf read it as an object
			members["jti"], _ = json.Marshal(jti)
			if payload, err = json.Marshal(members); err != nil {
				return "", fmt.Errorf("jwtcheck: encoding claims: %w", err)
			}
		}
	}
	if s.Raw != nil && s.Alg == jose.ES256 && !embedJWK && s.KeyID != "" {
		tok, ok, err := signES256(s.Raw, s.KeyID, typ, payload)
		if err != nil {
			return "", fmt.Errorf("jwtcheck: signing: %w", err)
		}
		if ok {
			return tok, nil
		}
	}
	opts := (&jose.SignerOptions{EmbedJWK: embedJWK}).WithType(jose.ContentType(typ))
	if !embedJWK && s.KeyID != "" {
		opts = opts.WithHeader("kid", s.KeyID)
	}
	key := s.Key
	if key == nil {
		key = cryptosigner.Opaque(s.Raw)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: s.Alg, Key: key}, opts)
	if err != nil {
		return "", fmt.Errorf("jwtcheck: creating signer: %w", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("jwtcheck: signing: %w", err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("jwtcheck: serialising: %w", err)
	}
	return out, nil
}

var errNotClaims = errors.New("jwtcheck: claims must encode as a JSON object")

// jtiOf returns the raw jti member of the encoded claims, as a map of
// their members would hold it (the last of duplicates). It walks the
// members instead of building that map, which every signature paid for;
// claims with a duplicate name take the map itself.
func jtiOf(payload []byte) (jti []byte, ok bool, err error) {
	if len(payload) == 0 || payload[0] != '{' {
		return nil, false, errNotClaims
	}
	walkErr := members(payload, func(name, raw []byte) error {
		if string(name) == "jti" {
			jti, ok = raw, true
		}
		return nil
	})
	if walkErr == nil {
		return jti, ok, nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(payload, &m) != nil {
		return nil, false, errNotClaims
	}
	jti, ok = m["jti"]
	return jti, ok, nil
}

// appendMember adds "name":"value" to the end of a JSON object.
func appendMember(obj []byte, name, value string) []byte {
	if plainHeaderValue(name) && plainHeaderValue(value) {
		// Written as encoding/json writes them (a jti is base64url).
		out := make([]byte, 0, len(obj)+len(name)+len(value)+6)
		out = append(out, bytes.TrimRight(obj[:len(obj)-1], " \t\r\n")...)
		if !bytes.Equal(out, []byte("{")) {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, name...)
		out = append(out, `":"`...)
		out = append(out, value...)
		return append(out, '"', '}')
	}
	n, _ := json.Marshal(name)
	v, _ := json.Marshal(value)
	out := bytes.TrimRight(obj[:len(obj)-1], " \t\r\n")
	out = append([]byte(nil), out...)
	if !bytes.Equal(out, []byte("{")) {
		out = append(out, ',')
	}
	out = append(out, n...)
	out = append(out, ':')
	out = append(out, v...)
	return append(out, '}')
}

// NewJTI returns 128 random bits, base64url.
func NewJTI() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("jwtcheck: random jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// SigningKey is what SignKey needs of a key; a *dpop.Key has it.
type SigningKey interface {
	Signer() crypto.Signer
	Algorithm() string
	KeyID() string
}

// SignKey signs claims with k as a compact JWT with the typ and kid headers
// and a jti claim: the building block of Service and Authority assertions
// and Security Event Tokens, whose callers choose and check the claims.
func SignKey(k SigningKey, typ string, claims any) (string, error) {
	if k == nil || (reflect.ValueOf(k).Kind() == reflect.Pointer && reflect.ValueOf(k).IsNil()) || k.Signer() == nil {
		return "", errors.New("jwtcheck: no signing key")
	}
	s := Signer{Alg: jose.SignatureAlgorithm(k.Algorithm()), KeyID: k.KeyID(), Raw: k.Signer()}
	return Sign(s, typ, false, claims)
}
