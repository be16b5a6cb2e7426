package dpop

import (
	"context"
	"crypto/subtle"
	"fmt"
	"time"
)

type dpopWire struct {
	JTI      string `json:"jti"`
	HTM      string `json:"htm"`
	HTU      string `json:"htu"`
	IssuedAt int64  `json:"iat"`
	ATH      string `json:"ath,omitempty"`
	Nonce    string `json:"nonce,omitempty"`
}

// TokenHash returns the ath value for an access token: base64url (no
// padding) of the SHA-256 of its ASCII bytes (RFC 9449 §4.2).
func TokenHash(accessToken string) string { return PassHash(accessToken) }

// DPoPProof creates an RFC 9449 DPoP proof JWT signed with k: typ
// dpop+jwt, the public key in the jwk header, a fresh jti, htm = method,
// htu = url without query and fragment, iat = now, ath when accessToken is
// not empty, and nonce when the server supplied one. A zero now means
// time.Now(). Send a new proof with every request.
func (k *Key) DPoPProof(method, url, accessToken, nonce string, now time.Time) (string, error) {
	if method == "" {
		return "", fmt.Errorf("dpop: DPoP proof: empty method")
	}
	htu, err := NormalizeHTU(url)
	if err != nil {
		return "", fmt.Errorf("dpop: DPoP proof: %w", err)
	}
	if now.IsZero() {
		now = time.Now()
	}
	w := dpopWire{HTM: method, HTU: htu, IssuedAt: now.Unix(), Nonce: nonce}
	if accessToken != "" {
		w.ATH = TokenHash(accessToken)
	}
	if w.JTI, err = newJTI(); err != nil {
		return "", err
	}
	return k.sign(TypeDPoP, true, w)
}

// DPoPClaims are the verified claims of a DPoP proof.
type DPoPClaims struct {
	JTI, HTM, HTU, ATH, Nonce string
	IssuedAt                  time.Time
	// JKT is the RFC 7638 thumbprint of the proof's key: the value to put
	// in cnf.jkt of a token bound to it.
	JKT string
}

// DPoPVerifier verifies RFC 9449 DPoP proofs, so a Service can issue and
// accept sender-constrained bearer tokens (cnf.jkt). Its fields are read on
// every call and must not change while it is in use; it is safe for
// concurrent use if Replay and Nonce are.
type DPoPVerifier struct {
	// Replay records (key thumbprint, jti) for as long as a proof is
	// acceptable. Required.
	Replay ReplayCache
	// Skew is the clock leeway for iat. Zero means DefaultSkew (60 s).
	Skew time.Duration
	// MaxAge is how old iat may be. Zero means DefaultMaxLifetime (300 s).
	MaxAge time.Duration
	// Nonce, when set, is called with the proof's nonce claim ("" when
	// absent) and returns an error if the server does not accept it; the
	// proof is then rejected with an error matching ErrUseDPoPNonce, and
	// the server should answer with a fresh DPoP-Nonce (RFC 9449 §8).
	Nonce func(nonce string) error
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verify checks a DPoP proof (the DPoP header value) for a request with the
// given method and URL, following RFC 9449 §4.3: a compact JWS with typ
// dpop+jwt and an allow-listed algorithm; a public asymmetric jwk header
// (no kid, jku, x5u or x5c) that verifies the signature; jti, htm, htu and
// iat present; htm equal to method; htu equal to url after NormalizeHTU;
// the nonce accepted by Nonce when set; iat no more than Skew in the future
// and no older than MaxAge + Skew; when accessToken is not empty, ath equal
// to TokenHash(accessToken) and the key's thumbprint equal to wantJKT (the
// token's cnf.jkt, required with a token); and finally (jkt, jti) unseen.
//
// At a token endpoint, pass an empty accessToken and wantJKT and bind the
// new token to the returned JKT. Failures match ErrInvalidDPoP (a replay
// also matches ErrReplay); a replay cache failure is returned wrapped and
// does not match ErrInvalidDPoP.
func (v *DPoPVerifier) Verify(ctx context.Context, proof, method, url, accessToken, wantJKT string) (*DPoPClaims, error) {
	switch {
	case v.Replay == nil:
		return nil, newErr(ErrInvalidConfig, "DPoPVerifier.Replay is nil")
	case method == "" || url == "":
		return nil, newErr(ErrInvalidConfig, "empty method or url")
	case accessToken != "" && wantJKT == "":
		return nil, newErr(ErrInvalidConfig, "wantJKT is required with an access token")
	}
	skew := orDefault(v.Skew, DefaultSkew)
	maxAge := orDefault(v.MaxAge, DefaultMaxLifetime)
	now := nowFunc(v.Now)

	tok, err := parseToken(proof, parseRules{kind: ErrInvalidDPoP, typ: TypeDPoP, requireTyp: true, allowJWK: true})
	if err != nil {
		return nil, err
	}
	if tok.kid != "" {
		return nil, newErr(ErrInvalidDPoP, "kid header with jwk")
	}
	key, err := ParsePublicJWK(tok.jwkRaw)
	if err != nil {
		return nil, wrapErr(ErrInvalidDPoP, "jwk header", err)
	}
	jkt, err := Thumbprint(key)
	if err != nil {
		return nil, wrapErr(ErrInvalidDPoP, "jwk header", err)
	}
	payload, err := tok.verify(key, ErrInvalidDPoP)
	if err != nil {
		return nil, err
	}
	c, err := decodeClaims(payload, ErrInvalidDPoP)
	if err != nil {
		return nil, err
	}
	switch {
	case c.ID == "":
		return nil, newErr(ErrInvalidDPoP, "missing jti")
	case len(c.ID) > maxJTIBytes:
		return nil, newErr(ErrInvalidDPoP, "jti too long")
	case c.HTM == "":
		return nil, newErr(ErrInvalidDPoP, "missing htm")
	case c.HTU == "":
		return nil, newErr(ErrInvalidDPoP, "missing htu")
	case c.IssuedAt == nil:
		return nil, newErr(ErrInvalidDPoP, "missing iat")
	case c.HTM != method:
		return nil, newErr(ErrInvalidDPoP, "htm mismatch")
	case !SameHTU(c.HTU, url):
		return nil, newErr(ErrInvalidDPoP, "htu mismatch")
	}
	iat := c.IssuedAt.Time()
	if iat.After(now.Add(skew)) {
		return nil, newErr(ErrInvalidDPoP, "iat in the future")
	}
	// Accepted only strictly before iat + maxAge + skew, the instant the
	// replay record below expires; at that instant the cache would neither
	// find nor keep the record.
	if !now.Before(iat.Add(maxAge + skew)) {
		return nil, newErr(ErrInvalidDPoP, "proof too old")
	}
	if c.Expiry != nil && !now.Before(c.Expiry.Time().Add(skew)) {
		return nil, newErr(ErrInvalidDPoP, "expired")
	}
	if accessToken != "" {
		if c.ATH == "" {
			return nil, newErr(ErrInvalidDPoP, "missing ath")
		}
		if subtle.ConstantTimeCompare([]byte(c.ATH), []byte(TokenHash(accessToken))) != 1 {
			return nil, newErr(ErrInvalidDPoP, "ath mismatch")
		}
	}
	if wantJKT != "" && subtle.ConstantTimeCompare([]byte(jkt), []byte(wantJKT)) != 1 {
		return nil, newErr(ErrInvalidDPoP, "key does not match the token's cnf.jkt")
	}
	if v.Nonce != nil {
		if err := v.Nonce(c.Nonce); err != nil {
			return nil, wrapErr(ErrInvalidDPoP, "nonce not accepted", ErrUseDPoPNonce)
		}
	}
	replayed, err := v.Replay.Seen(ctx, "dpop:"+jkt, c.ID, iat.Add(maxAge+skew))
	if err != nil {
		return nil, fmt.Errorf("dpop: replay check: %w", err)
	}
	if replayed {
		return nil, wrapErr(ErrInvalidDPoP, "jti replayed", ErrReplay)
	}
	return &DPoPClaims{
		JTI: c.ID, HTM: c.HTM, HTU: c.HTU, ATH: c.ATH, Nonce: c.Nonce,
		IssuedAt: iat, JKT: jkt,
	}, nil
}
