package conformance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
)

// forge builds JWTs the way a careless or hostile peer would, so the kit
// can offer a target exactly the token a hygiene check needs. Only ES256
// keys sign; "none" and HS256 are produced by hand.
type forge struct {
	header map[string]any
	claims map[string]any
}

func newForge(typ string, claims map[string]any) *forge {
	h := map[string]any{"alg": "ES256"}
	if typ != "" {
		h["typ"] = typ
	}
	return &forge{header: h, claims: claims}
}

func (f *forge) with(k string, v any) *forge  { f.header[k] = v; return f }
func (f *forge) claim(k string, v any) *forge { f.claims[k] = v; return f }
func (f *forge) withoutClaim(k string) *forge { delete(f.claims, k); return f }
func b64(b []byte) string                     { return base64.RawURLEncoding.EncodeToString(b) }
func (f *forge) parts() (string, error)       { return encodeParts(f.header, f.claims) }
func encodeJSON(v any) (string, error)        { b, err := json.Marshal(v); return b64(b), err }
func newJTI() string                          { b := make([]byte, 16); _, _ = rand.Read(b); return hex.EncodeToString(b) }
func unix(t time.Time) int64                  { return t.Unix() }
func claimsAt(now time.Time, ttl time.Duration) map[string]any {
	return map[string]any{"iat": unix(now), "exp": unix(now.Add(ttl)), "jti": newJTI()}
}

func encodeParts(h, c map[string]any) (string, error) {
	hs, err := encodeJSON(h)
	if err != nil {
		return "", err
	}
	cs, err := encodeJSON(c)
	if err != nil {
		return "", err
	}
	return hs + "." + cs, nil
}

// sign signs with an ES256 key (the header's kid is set when kid is true).
func (f *forge) sign(k *dpop.Key, kid bool) (string, error) {
	if kid {
		f.header["kid"] = k.KeyID()
	}
	f.header["alg"] = "ES256"
	in, err := f.parts()
	if err != nil {
		return "", err
	}
	return in + "." + es256(k, in), nil
}

// none returns the token with alg "none" and an empty signature.
func (f *forge) none() string {
	f.header["alg"] = "none"
	delete(f.header, "kid")
	in, _ := f.parts()
	return in + "."
}

// hs256 signs with HMAC-SHA256 using secret, the classic confusion where
// a verifier takes a public key as an HMAC secret.
func (f *forge) hs256(secret []byte) string {
	f.header["alg"] = "HS256"
	in, _ := f.parts()
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + b64(m.Sum(nil))
}

func es256(k *dpop.Key, in string) string {
	d := sha256.Sum256([]byte(in))
	der, err := k.Signer().Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		return ""
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return ""
	}
	out := make([]byte, 64)
	sig.R.FillBytes(out[:32])
	sig.S.FillBytes(out[32:])
	return b64(out)
}

// es256Key makes a fresh ES256 key.
func es256Key() (*dpop.Key, error) {
	k, err := dpop.GenerateKey("ES256")
	if err != nil {
		return nil, err
	}
	if _, ok := k.Signer().Public().(*ecdsa.PublicKey); !ok {
		return nil, errors.New("conformance: not an EC key")
	}
	return k, nil
}

// publicJWK returns k's public JWK as a map, for jwk headers.
func publicJWK(k *dpop.Key) map[string]any {
	var m map[string]any
	_ = json.Unmarshal(k.PublicJSON(), &m)
	return m
}
