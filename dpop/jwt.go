package dpop

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// JWT "typ" header values, one per kind of token (G-8). Our senders always
// set them; our verifiers accept a token without typ, or with the generic
// "JWT", from a plain v0.1 peer, but never a token carrying another kind's
// typ. DPoP proofs must carry [TypeDPoP] (RFC 9449 §4.2).
const (
	TypeProof           = "agentpass-proof+jwt"
	TypeTaskAttestation = "agentpass-task+jwt"
	TypeAttestation     = "agentpass-attestation+jwt"
	TypeDPoP            = "dpop+jwt"
)

// Defaults, applied when the matching field or argument is zero (G-7).
const (
	// DefaultSkew is the clock leeway applied to exp, iat and nbf.
	DefaultSkew = 60 * time.Second
	// DefaultProofTTL is the lifetime of proofs and task attestations we
	// create.
	DefaultProofTTL = 60 * time.Second
	// DefaultMaxLifetime bounds exp - iat of harness proofs and task
	// attestations, and the age of DPoP proofs.
	DefaultMaxLifetime = 300 * time.Second
	// DefaultAttestationMaxLifetime bounds exp - iat of harness attestations.
	DefaultAttestationMaxLifetime = time.Hour
)

// sign serialises claims as the JWS payload and signs it with k. The kid
// header is set unless the public key is embedded (DPoP), in which case the
// jwk header carries the key.
func (k *Key) sign(typ string, embedJWK bool, claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("dpop: encoding claims: %w", err)
	}
	if len(payload) == 0 || payload[0] != '{' {
		return "", fmt.Errorf("dpop: claims must encode as a JSON object")
	}
	opts := &jose.SignerOptions{EmbedJWK: embedJWK}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	if !embedJWK && k.kid != "" {
		opts = opts.WithHeader("kid", k.kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.opaque}, opts)
	if err != nil {
		return "", fmt.Errorf("dpop: creating signer: %w", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("dpop: signing: %w", err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("dpop: serialising: %w", err)
	}
	return s, nil
}

// SignJWT signs claims (anything that encodes as a JSON object) as a compact
// JWT with k, setting the kid header and, when typ is not empty, the typ
// header. It is the building block for Service and Authority assertions;
// callers choose and check the claims.
func SignJWT(k *Key, typ string, claims any) (string, error) {
	if k == nil {
		return "", newErr(ErrInvalidKey, "nil key")
	}
	return k.sign(typ, false, claims)
}
