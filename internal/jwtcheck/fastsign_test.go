package jwtcheck

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
)

// signBoth signs payload once through the ES256 fast path and once through
// go-jose, and returns both tokens ("" for the fast one when it declined).
func signBoth(t testing.TB, k *ecdsa.PrivateKey, kid, typ string, claims any) (fast, slow string) {
	t.Helper()
	s := Signer{Key: cryptosigner.Opaque(k), Alg: jose.ES256, KeyID: kid}
	slow, err := Sign(s, typ, false, claims)
	if err != nil {
		t.Fatal(err)
	}
	s.Raw = k
	fast, err = Sign(s, typ, false, claims)
	if err != nil {
		t.Fatal(err)
	}
	return fast, slow
}

// The fast path writes what go-jose writes (ES256, signing-input bytes) and
// go-jose verifies it with the key (G-ONE-PIPELINE: one token format).
func TestSignES256MatchesGoJose(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ kid, typ string }{
		{"k1", "service-assertion+jwt"},
		{"Qh2kZ-_x", "secevent+jwt"},
		{"kid with space/and:colon", "JWT"},
		{`kid"quote`, "JWT"},  // escaped: go-jose path
		{"kid<html>&", "JWT"}, // escaped for HTML: go-jose path
		{"ünïcode", "JWT"},    // not ASCII: go-jose path
		{strings.Repeat("k", 300), "JWT"},
	} {
		claims := map[string]any{"iss": "https://a.example", "aud": "https://b.example", "jti": "j1", "n": 1}
		fast, slow := signBoth(t, k, c.kid, c.typ, claims)
		fi, si := fast[:strings.LastIndexByte(fast, '.')], slow[:strings.LastIndexByte(slow, '.')]
		if fi != si {
			t.Errorf("kid %q: signing input\nfast %s\nslow %s", c.kid, fi, si)
		}
		obj, err := jose.ParseSignedCompact(fast, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatalf("kid %q: go-jose cannot parse the fast token: %v", c.kid, err)
		}
		if _, err := obj.Verify(&k.PublicKey); err != nil {
			t.Errorf("kid %q: go-jose does not verify the fast token: %v", c.kid, err)
		}
	}
}

// derToRaw accepts exactly the DER encodings encoding/asn1 reads as two
// integers in [0, 2^256), and yields the same numbers.
func FuzzDERToRaw(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for range 4 {
		der, _ := ecdsa.SignASN1(rand.Reader, k, make([]byte, 32))
		f.Add(der)
	}
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Add([]byte{0x30, 0x08, 0x02, 0x02, 0x00, 0x01, 0x02, 0x02, 0x00, 0x80})
	f.Fuzz(func(t *testing.T, der []byte) {
		var raw [64]byte
		ok := derToRaw(der, raw[:])
		var v struct{ R, S *big.Int }
		rest, err := asn1.Unmarshal(der, &v)
		want := err == nil && len(rest) == 0 && v.R.Sign() >= 0 && v.S.Sign() >= 0 && v.R.BitLen() <= 256 && v.S.BitLen() <= 256
		if ok && !want {
			t.Fatalf("derToRaw accepts %x, encoding/asn1 does not", der)
		}
		if !ok {
			return // refusing more is safe: Sign falls back to go-jose
		}
		if new(big.Int).SetBytes(raw[:32]).Cmp(v.R) != 0 || new(big.Int).SetBytes(raw[32:]).Cmp(v.S) != 0 {
			t.Fatalf("derToRaw(%x) = %x", der, raw)
		}
	})
}

func BenchmarkSignES256(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	claims := map[string]any{"iss": "https://a.example", "aud": "https://b.example", "iat": 1, "exp": 2}
	for _, c := range []struct {
		name string
		raw  bool
	}{{"gojose", false}, {"fast", true}} {
		b.Run(c.name, func(b *testing.B) {
			s := Signer{Key: cryptosigner.Opaque(k), Alg: jose.ES256, KeyID: "k1"}
			if c.raw {
				s.Raw = k
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Sign(s, "service-assertion+jwt", false, claims); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzRawToDER: ES256 and ES384 signatures are checked through the DER
// that rawToDER builds on the stack (#19); it must be the DER
// encoding/asn1 writes for the same two integers, and verification must
// answer as ecdsa.Verify with big.Ints does, on every signature.
func FuzzRawToDER(f *testing.F) {
	k256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	msg := []byte("header.payload")
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.ES384} {
		s := Signer{Key: cryptosigner.Opaque(k256), Alg: alg}
		if alg == jose.ES384 {
			s.Key = cryptosigner.Opaque(k384)
		}
		tok, err := Sign(s, TypeAssertion, false, map[string]any{"iss": "x"})
		if err != nil {
			f.Fatal(err)
		}
		parts := strings.Split(tok, ".")
		sig, _ := decodeB64Test(parts[2])
		f.Add(sig, []byte(parts[0]+"."+parts[1]), alg == jose.ES384)
	}
	f.Add(make([]byte, 64), msg, false)
	f.Add(append(make([]byte, 63), 1), msg, false)
	f.Add(append([]byte{0x80}, make([]byte, 95)...), msg, true)
	f.Fuzz(func(t *testing.T, sig, input []byte, p384 bool) {
		pub, alg := &k256.PublicKey, jose.ES256
		if p384 {
			pub, alg = &k384.PublicKey, jose.ES384
		}
		var buf [3 + 2*(2+1+66)]byte
		der, ok := rawToDER(buf[:0], sig)
		r, s := new(big.Int).SetBytes(sig[:len(sig)/2]), new(big.Int).SetBytes(sig[len(sig)/2:])
		if len(sig)%2 == 0 && len(sig) <= 132 && r.Sign() > 0 && s.Sign() > 0 {
			want, _ := asn1.Marshal(struct{ R, S *big.Int }{r, s})
			if !ok || string(der) != string(want) {
				t.Fatalf("rawToDER(%x) = %x, %v; encoding/asn1 %x", sig, der, ok, want)
			}
		} else if ok {
			t.Fatalf("rawToDER(%x) accepted", sig)
		}
		size := (pub.Curve.Params().BitSize + 7) / 8
		ref := len(sig) == 2*size && r.Sign() > 0 && s.Sign() > 0 && ecdsaVerifyBig(pub, alg, input, r, s)
		if got := verifySignature(pub, alg, input, sig); got != ref {
			t.Fatalf("verifySignature(%x) = %v, ecdsa.Verify %v", sig, got, ref)
		}
	})
}

func ecdsaVerifyBig(pub *ecdsa.PublicKey, alg jose.SignatureAlgorithm, input []byte, r, s *big.Int) bool {
	if alg == jose.ES256 {
		h := sha256.Sum256(input)
		return ecdsa.Verify(pub, h[:], r, s)
	}
	h := sha512.Sum384(input)
	return ecdsa.Verify(pub, h[:], r, s)
}

func decodeB64Test(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// TestSignRawOnly (#19 item 2): a Signer with only its raw key signs both
// ways, directly for ES256 with a kid and through go-jose (the key wrapped
// then) otherwise; SignKey no longer wraps a key it signs directly.
func TestSignRawOnly(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	claims := map[string]any{"iss": "https://a.example", "aud": "https://b.example", "iat": 1, "exp": 2}
	pub := &jose.JSONWebKey{Key: &k.PublicKey}
	for _, s := range []Signer{{Alg: jose.ES256, KeyID: "k1", Raw: k}, {Alg: jose.ES256, Raw: k}} {
		raw, err := Sign(s, "service-assertion+jwt", false, claims)
		if err != nil {
			t.Fatalf("kid %q: %v", s.KeyID, err)
		}
		obj, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := obj.Verify(pub); err != nil {
			t.Errorf("kid %q: %v", s.KeyID, err)
		}
	}
	if _, err := Sign(Signer{Alg: jose.ES256}, "x", false, claims); err == nil {
		t.Error("signed without a key")
	}
	sk := testSigningKey{k}
	signed := testing.AllocsPerRun(50, func() { _, _ = Sign(Signer{Alg: jose.ES256, KeyID: "k1", Raw: k}, "x", false, claims) })
	viaSignKey := testing.AllocsPerRun(50, func() {
		if _, err := SignKey(sk, "x", claims); err != nil {
			t.Fatal(err)
		}
	})
	slack := 0.0
	if raceEnabled {
		slack = 2 // pooled buffers dropped at random
	}
	if viaSignKey > signed+slack {
		t.Errorf("SignKey: %v allocations, Sign with the raw key: %v", viaSignKey, signed)
	}
}

type testSigningKey struct{ k *ecdsa.PrivateKey }

func (k testSigningKey) Signer() crypto.Signer { return k.k }
func (testSigningKey) Algorithm() string       { return "ES256" }
func (testSigningKey) KeyID() string           { return "k1" }
