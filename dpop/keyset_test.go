package dpop

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

func kids(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

func TestKeySetRotation(t *testing.T) {
	k1, k2, k3 := mustKey(t, ""), mustKey(t, "EdDSA"), mustKey(t, "")
	s, err := NewKeySet(k1)
	if err != nil {
		t.Fatal(err)
	}
	if s.Current() != k1 {
		t.Fatal("Current() is not the first key")
	}
	s.Rotate(k2)
	s.Rotate(k3)
	if s.Current() != k3 {
		t.Fatal("Current() is not the newest key")
	}
	if diff := cmp.Diff([]string{k3.KeyID(), k2.KeyID(), k1.KeyID()}, kids(s.JWKS())); diff != "" {
		t.Errorf("JWKS kids (-want +got):\n%s", diff)
	}
	// A token signed by a retiring key still verifies with the published key.
	tok, err := signJWT(k1, "", map[string]string{"iss": "x"})
	if err != nil {
		t.Fatal(err)
	}
	jws, _ := jose.ParseSignedCompact(tok, algorithms)
	pub, ok := s.PublicKey(k1.KeyID())
	if !ok {
		t.Fatal("retiring key not found by kid")
	}
	if _, err := jws.Verify(&pub); err != nil {
		t.Errorf("token of retiring key does not verify: %v", err)
	}
	// The JWKS never holds private members.
	b, err := json.Marshal(s.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Keys []map[string]any }
	_ = json.Unmarshal(b, &doc)
	for _, k := range doc.Keys {
		for _, p := range privateJWKMembers {
			if _, ok := k[p]; ok {
				t.Errorf("JWKS key %v has private member %q", k["kid"], p)
			}
		}
	}
	if !s.Remove(k1.KeyID()) || s.Remove(k1.KeyID()) || s.Remove(k3.KeyID()) {
		t.Error("Remove: want true once for a retiring key, false for the current key")
	}
	if _, ok := s.PublicKey(k1.KeyID()); ok {
		t.Error("removed key still published")
	}
	// Rotating back to a retiring key promotes it without duplicating it.
	s.Rotate(k2)
	if diff := cmp.Diff([]string{k2.KeyID(), k3.KeyID()}, kids(s.JWKS())); diff != "" {
		t.Errorf("JWKS kids after promoting (-want +got):\n%s", diff)
	}
}

func TestKeySetBoundsRetiring(t *testing.T) {
	s, err := GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	for range maxRetiringKeys + 3 {
		s.Rotate(mustKey(t, ""))
	}
	if got := len(s.JWKS().Keys); got != maxRetiringKeys+1 {
		t.Errorf("JWKS has %d keys, want %d", got, maxRetiringKeys+1)
	}
}

func TestNewKeySetRejects(t *testing.T) {
	k := mustKey(t, "")
	sym := jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "s"}
	tests := []struct {
		name     string
		current  *Key
		retiring []jose.JSONWebKey
	}{
		{"nil current", nil, nil},
		{"duplicate kid", k, []jose.JSONWebKey{k.Public()}},
		{"symmetric retiring key", k, []jose.JSONWebKey{sym}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewKeySet(tt.current, tt.retiring...); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("NewKeySet = %v, want ErrInvalidKey", err)
			}
		})
	}
	// A private retiring key is reduced to its public half.
	other := mustKey(t, "")
	priv := jose.JSONWebKey{Key: other.Signer(), KeyID: "old"}
	s, err := NewKeySet(k, priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := s.PublicKey("old")
	if !ok || !pub.IsPublic() {
		t.Errorf("retiring key = %+v, want public", pub)
	}
}

// The KeySet is safe for concurrent use (run with -race).
func TestKeySetConcurrent(t *testing.T) {
	s, err := GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	keys := []*Key{mustKey(t, ""), mustKey(t, ""), mustKey(t, "")}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				if i%2 == 0 {
					s.Rotate(keys[j%len(keys)])
				} else {
					if len(s.JWKS().Keys) == 0 {
						t.Error("empty JWKS")
					}
					if _, err := signJWT(s.Current(), "", map[string]int{"n": j}); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadKeySet(t *testing.T) {
	dir := t.TempDir()
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(edKey)
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	pkix, _ := x509.MarshalPKIXPublicKey(rsaKey.Public())
	p8 := writePEM(t, dir, "ed.pem", "PRIVATE KEY", pkcs8)
	pSEC1 := writePEM(t, dir, "ec.pem", "EC PRIVATE KEY", sec1)
	pPKCS1 := writePEM(t, dir, "rsa.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))
	pPub := writePEM(t, dir, "rsa-pub.pem", "PUBLIC KEY", pkix)
	jwkPriv := jose.JSONWebKey{Key: ecKey, KeyID: "jwk-1", Algorithm: "ES256"}
	jb, _ := jwkPriv.MarshalJSON()
	pJWK := filepath.Join(dir, "key.jwk")
	_ = os.WriteFile(pJWK, jb, 0o600)
	pGarbage := filepath.Join(dir, "garbage")
	_ = os.WriteFile(pGarbage, []byte("not a key"), 0o600)
	pCert := writePEM(t, dir, "cert.pem", "CERTIFICATE", []byte{1, 2, 3})

	tests := []struct {
		name     string
		paths    []string
		wantAlg  string
		wantKid  string
		wantKeys int
	}{
		{"PKCS#8 Ed25519", []string{p8}, "EdDSA", "", 1},
		{"SEC1 EC", []string{pSEC1}, "ES256", "", 1},
		{"PKCS#1 RSA", []string{pPKCS1}, "RS256", "", 1},
		{"JWK with kid", []string{pJWK}, "ES256", "jwk-1", 1},
		{"current plus retiring public and private", []string{p8, pPub, pSEC1}, "EdDSA", "", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := LoadKeySet(tt.paths...)
			if err != nil {
				t.Fatal(err)
			}
			cur := s.Current()
			if cur.Algorithm() != tt.wantAlg {
				t.Errorf("alg = %q, want %q", cur.Algorithm(), tt.wantAlg)
			}
			wantKid := tt.wantKid
			if wantKid == "" {
				wantKid = cur.Thumbprint()
			}
			if cur.KeyID() != wantKid {
				t.Errorf("kid = %q, want %q", cur.KeyID(), wantKid)
			}
			if got := len(s.JWKS().Keys); got != tt.wantKeys {
				t.Errorf("JWKS has %d keys, want %d", got, tt.wantKeys)
			}
		})
	}
	bad := []struct {
		name  string
		paths []string
	}{
		{"no files", nil},
		{"public key first", []string{pPub}},
		{"garbage", []string{pGarbage}},
		{"certificate block", []string{pCert}},
		{"missing file", []string{filepath.Join(dir, "nope")}},
		{"same key twice", []string{pSEC1, pSEC1}},
	}
	for _, tt := range bad {
		t.Run("reject/"+tt.name, func(t *testing.T) {
			if _, err := LoadKeySet(tt.paths...); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("LoadKeySet = %v, want ErrInvalidKey", err)
			}
		})
	}
}
