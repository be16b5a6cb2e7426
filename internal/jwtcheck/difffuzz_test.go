package jwtcheck_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/agentpass-go/agentpass/internal/jwtcheck"
)

// FuzzParseAgainstGoJose: whatever header and claims a validly signed
// token carries, a token Parse accepts is one go-jose parses too, with the
// same algorithm, kid and claims, and Verify agrees with go-jose's
// verification (G-ONE-PIPELINE: our pipeline's hand-written decoding and
// direct ES256 verification accept nothing go-jose would not).
func FuzzParseAgainstGoJose(f *testing.F) {
	k := newTestKey(f)
	for _, s := range realTokens(f) {
		parts := strings.Split(s, ".")
		h, _ := decodeB64(parts[0])
		c, _ := decodeB64(parts[1])
		f.Add(h, c)
	}
	f.Add([]byte(`{"alg":"ES256","kid":"k1","typ":"JWT"}`), []byte(`{"iss":"é\u00e9","sub":"a\"b","jti":"\u0000"}`))
	f.Add([]byte(`{"alg":"ES256","kid":"k\u0031"}`), []byte(`{"iss":"\xff","aud":"x","jti":"j"}`))
	f.Add([]byte(`{"alg":"ES256","kid":"k1"}`), []byte(`{"aud":[ "a","b\u0063"],"iat":1700000000,"exp":1.7e9,"nbf":null}`))
	// Names equal only once invalid UTF-8 reads as U+FFFD (review 6).
	f.Add([]byte("{\"alg\":\"ES256\",\"kid\":\"k1\",\"\x80\":1,\"\x81\":2}"), []byte(`{"iss":"a","aud":"x","jti":"j"}`))
	f.Add([]byte(`{"alg":"ES256","kid":"k1"}`), []byte("{\"iss\":\"a\",\"\xff\":1,\"\\ufffd\":2,\"jti\":\"j\"}"))
	f.Fuzz(func(t *testing.T, header, claims []byte) {
		raw := k.signRaw(t, header, claims)
		for _, p := range profiles {
			tok, err := jwtcheck.Parse(raw, p)
			if err != nil || p.EmbeddedJWK {
				continue
			}
			obj, err := jose.ParseSignedCompact(raw, jwtcheck.Algorithms())
			if err != nil {
				t.Fatalf("%s: Parse accepts what go-jose refuses (%v): %q", p.Name, err, raw)
			}
			sig := obj.Signatures[0].Protected
			if jose.SignatureAlgorithm(sig.Algorithm) != tok.Alg || sig.KeyID != tok.Kid {
				t.Fatalf("%s: header alg/kid %q/%q, go-jose %q/%q", p.Name, tok.Alg, tok.Kid, sig.Algorithm, sig.KeyID)
			}
			ours := tok.Verify(&k.jwk) == nil
			payload, theirErr := obj.Verify(&k.priv.PublicKey)
			if ours && theirErr != nil {
				t.Fatalf("%s: Verify accepts what go-jose refuses: %v", p.Name, theirErr)
			}
			if theirErr != nil {
				continue
			}
			// Claims as encoding/json reads each exactly named member
			// (go-jose's claim types match names case-insensitively).
			var m map[string]json.RawMessage
			if err := json.Unmarshal(payload, &m); err != nil {
				t.Fatalf("%s: Parse accepted claims that are not an object: %v", p.Name, err)
			}
			for name, got := range map[string]string{"iss": tok.Claims.Issuer, "sub": tok.Claims.Subject, "jti": tok.Claims.ID} {
				var want string
				if raw, ok := m[name]; ok && json.Unmarshal(raw, &want) != nil {
					t.Fatalf("%s: Parse accepted a non-string %s: %s", p.Name, name, raw)
				}
				if got != want {
					t.Fatalf("%s: %s = %q, encoding/json %q", p.Name, name, got, want)
				}
			}
			var aud jwt.Audience
			if raw, ok := m["aud"]; ok && json.Unmarshal(raw, &aud) != nil {
				t.Fatalf("%s: Parse accepted an aud go-jose's type refuses: %s", p.Name, raw)
			}
			if !slices.Equal(aud, tok.Claims.Audience) {
				t.Fatalf("%s: aud = %q, go-jose's type %q", p.Name, tok.Claims.Audience, aud)
			}
			for name, got := range map[string]*jwt.NumericDate{"iat": tok.Claims.IssuedAt, "exp": tok.Claims.Expiry, "nbf": tok.Claims.NotBefore} {
				var want *jwt.NumericDate
				if raw, ok := m[name]; ok && json.Unmarshal(raw, &want) != nil {
					t.Fatalf("%s: Parse accepted a %s go-jose's type refuses: %s", p.Name, name, raw)
				}
				if (got == nil) != (want == nil) || got != nil && *got != *want {
					t.Fatalf("%s: %s = %v, go-jose's type %v", p.Name, name, got, want)
				}
			}
		}
	})
}
