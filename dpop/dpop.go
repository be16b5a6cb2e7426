package dpop

import (
	"context"
	"crypto/subtle"
	"fmt"
	"time"

	"github.com/agentpass-go/agentpass/internal/jwtcheck"
)

type dpopWire struct {
	JTI      string `json:"jti"`
	HTM      string `json:"htm"`
	HTU      string `json:"htu"`
	IssuedAt int64  `json:"iat"`
	ATH      string `json:"ath,omitempty"`
	Nonce    string `json:"nonce,omitempty"`
}

// tokenHash returns the ath value for an access token: base64url (no
// padding) of the SHA-256 of its ASCII bytes (RFC 9449 §4.2).
func tokenHash(accessToken string) string { return PassHash(accessToken) }

// DPoPProof creates an RFC 9449 DPoP proof JWT signed with k: typ
// dpop+jwt, the public key in the jwk header, a fresh jti, htm = method,
// htu = url without query and fragment, iat = now, ath when accessToken is
// not empty, and nonce when the server supplied one. A zero now means
// time.Now(). Send a new proof with every request.
func (k *Key) DPoPProof(method, url, accessToken, nonce string, now time.Time) (string, error) {
	if method == "" {
		return "", fmt.Errorf("dpop: DPoP proof: empty method")
	}
	htu, err := normalizeHTU(url)
	if err != nil {
		return "", fmt.Errorf("dpop: DPoP proof: %w", err)
	}
	if now.IsZero() {
		now = time.Now()
	}
	w := dpopWire{HTM: method, HTU: htu, IssuedAt: now.Unix(), Nonce: nonce}
	if accessToken != "" {
		w.ATH = tokenHash(accessToken)
	}
	if w.JTI, err = newJTI(); err != nil {
		return "", err
	}
	return k.sign(typeDPoP, true, w)
}

// DPoPClaims are the verified claims of a DPoP proof.
type DPoPClaims struct {
	JTI, HTM, HTU, ATH, Nonce string
	IssuedAt                  time.Time
	// JKT is the RFC 7638 thumbprint of the proof's key: the value to put
	// in cnf.jkt of a token bound to it.
	JKT string
}

// DPoPVerifierConfig configures [NewDPoPVerifier].
type DPoPVerifierConfig struct {
	// Replay records (key thumbprint, jti) for as long as a proof is
	// acceptable. Required.
	Replay ReplayCache
	// Skew is the clock leeway for iat. Zero means DefaultSkew (60 s).
	Skew time.Duration
	// MaxAge is how old iat may be. Zero means DefaultMaxLifetime (300 s);
	// at most 24 h, as is Skew.
	MaxAge time.Duration
	// Nonce, when set, is called with the proof's nonce claim ("" when
	// absent) and returns an error if the server does not accept it; the
	// proof is then rejected with an error matching ErrUseDPoPNonce, and
	// the server should answer with a fresh DPoP-Nonce (RFC 9449 §8).
	Nonce func(nonce string) error
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DPoPVerifier verifies RFC 9449 DPoP proofs, so a Service can issue and
// accept sender-constrained bearer tokens (cnf.jkt). Create it with
// [NewDPoPVerifier]; the zero value refuses every proof. It is safe for
// concurrent use if its replay cache and nonce function are.
type DPoPVerifier struct {
	replay ReplayCache
	skew   time.Duration
	maxAge time.Duration
	nonce  func(string) error
	now    func() time.Time
}

// NewDPoPVerifier validates cfg and returns a verifier. Errors match
// ErrInvalidConfig.
func NewDPoPVerifier(cfg DPoPVerifierConfig) (*DPoPVerifier, error) {
	if cfg.Replay == nil {
		return nil, newErr(ErrInvalidConfig, "DPoPVerifierConfig.Replay is nil")
	}
	if cfg.Skew < 0 || cfg.MaxAge < 0 {
		return nil, newErr(ErrInvalidConfig, "negative Skew or MaxAge")
	}
	if cfg.Skew > maxConfigLifetime || cfg.MaxAge > maxConfigLifetime {
		return nil, newErr(ErrInvalidConfig, "Skew or MaxAge above 24h")
	}
	return &DPoPVerifier{
		replay: cfg.Replay,
		skew:   orDefault(cfg.Skew, DefaultSkew),
		maxAge: orDefault(cfg.MaxAge, DefaultMaxLifetime),
		nonce:  cfg.Nonce,
		now:    nowOr(cfg.Now),
	}, nil
}

// DPoPProof is a DPoP proof that passed every check of
// [DPoPVerifier.Check]; only its replay step is left.
type DPoPProof struct {
	tok    *jwtcheck.Token
	claims DPoPClaims
}

// Claims returns the proof's verified claims.
func (p *DPoPProof) Claims() *DPoPClaims {
	c := p.claims
	return &c
}

// Verify checks a DPoP proof (the DPoP header value) for a request with the
// given method and URL and records its jti: Check, then Record.
//
// At a token endpoint, pass an empty accessToken and wantJKT and bind the
// new token to the returned JKT. Failures match ErrInvalidDPoP (a replay
// also matches ErrReplay); a replay cache failure is returned wrapped and
// does not match ErrInvalidDPoP.
func (v *DPoPVerifier) Verify(ctx context.Context, proof, method, url, accessToken, wantJKT string) (*DPoPClaims, error) {
	p, err := v.Check(proof, method, url, accessToken, wantJKT)
	if err != nil {
		return nil, err
	}
	if err := v.Record(ctx, p); err != nil {
		return nil, err
	}
	return p.Claims(), nil
}

// Check runs every check of RFC 9449 §4.3 except the replay step: a
// compact JWS with typ dpop+jwt and an allow-listed algorithm; a public
// asymmetric jwk header (no kid, jku, x5u or x5c) that verifies the
// signature; jti, htm, htu and iat present; htm equal to method; htu equal
// to url after normalisation; iat no more than Skew in the future and no
// older than MaxAge + Skew; when accessToken is not empty, ath equal to
// tokenHash(accessToken) and the key's thumbprint equal to wantJKT (the
// token's cnf.jkt, required with a token); and the nonce accepted when the
// verifier has a Nonce function. It records nothing: call Record once
// every other check of the request has passed, so that proofs which fail
// them take no space in the replay cache.
func (v *DPoPVerifier) Check(proof, method, url, accessToken, wantJKT string) (*DPoPProof, error) {
	switch {
	case v == nil || v.replay == nil:
		return nil, newErr(ErrInvalidConfig, "DPoPVerifier not made by NewDPoPVerifier")
	case method == "" || url == "":
		return nil, newErr(ErrInvalidConfig, "empty method or url")
	case accessToken != "" && wantJKT == "":
		return nil, newErr(ErrInvalidConfig, "wantJKT is required with an access token")
	}
	tok, err := jwtcheck.Parse(proof, jwtcheck.DPoP)
	if err != nil {
		return nil, checkErr(ErrInvalidDPoP, err)
	}
	if tok.Kid != "" {
		return nil, newErr(ErrInvalidDPoP, "kid header with jwk")
	}
	c := &tok.Claims
	switch {
	case c.ID == "":
		return nil, newErr(ErrInvalidDPoP, "missing jti")
	case c.HTM == "":
		return nil, newErr(ErrInvalidDPoP, "missing htm")
	case c.HTU == "":
		return nil, newErr(ErrInvalidDPoP, "missing htu")
	case c.IssuedAt == nil:
		return nil, newErr(ErrInvalidDPoP, "missing iat")
	case c.HTM != method:
		return nil, newErr(ErrInvalidDPoP, "htm mismatch")
	case !sameHTU(c.HTU, url):
		return nil, newErr(ErrInvalidDPoP, "htu mismatch")
	}
	if err := jwtcheck.CheckTimes(tok, v.now(), jwtcheck.TimeRules{Skew: v.skew, MaxAge: v.maxAge}); err != nil {
		return nil, checkErr(ErrInvalidDPoP, err)
	}
	mk, err := memoPublicJWK(tok.JWK)
	if err != nil {
		return nil, wrapErr(ErrInvalidDPoP, "jwk header", err)
	}
	key := mk.key // the memo's: only read
	jkt, err := mk.thumbprint()
	if err != nil {
		return nil, wrapErr(ErrInvalidDPoP, "jwk header", err)
	}
	if err := tok.Verify(key); err != nil {
		return nil, checkErr(ErrInvalidDPoP, err)
	}
	if accessToken != "" {
		if c.ATH == "" {
			return nil, newErr(ErrInvalidDPoP, "missing ath")
		}
		if subtle.ConstantTimeCompare([]byte(c.ATH), []byte(tokenHash(accessToken))) != 1 {
			return nil, newErr(ErrInvalidDPoP, "ath mismatch")
		}
	}
	if wantJKT != "" && subtle.ConstantTimeCompare([]byte(jkt), []byte(wantJKT)) != 1 {
		return nil, newErr(ErrInvalidDPoP, "key does not match the token's cnf.jkt")
	}
	if v.nonce != nil {
		if err := v.nonce(c.Nonce); err != nil {
			return nil, wrapErr(ErrInvalidDPoP, "nonce not accepted", ErrUseDPoPNonce)
		}
	}
	return &DPoPProof{tok: tok, claims: DPoPClaims{
		JTI: c.ID, HTM: c.HTM, HTU: c.HTU, ATH: c.ATH, Nonce: c.Nonce,
		IssuedAt: c.IssuedAt.Time(), JKT: jkt,
	}}, nil
}

// Record is the replay step of a checked proof: it records (key
// thumbprint, jti) until the proof could no longer be accepted, and fails
// with ErrReplay when the pair was already recorded.
func (v *DPoPVerifier) Record(ctx context.Context, p *DPoPProof) error {
	if v == nil || v.replay == nil {
		return newErr(ErrInvalidConfig, "DPoPVerifier not made by NewDPoPVerifier")
	}
	if p == nil || p.tok == nil {
		return newErr(ErrInvalidDPoP, "no checked proof")
	}
	until := p.claims.IssuedAt.Add(v.maxAge + v.skew)
	if err := p.tok.Record(ctx, v.replay, "dpop:"+p.claims.JKT, until); err != nil {
		return checkErr(ErrInvalidDPoP, err)
	}
	return nil
}
