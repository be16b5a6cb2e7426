package discovery

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const jwksURL = "https://api.example.com/jwks.json"

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// jwksJSON marshals public keys (or, for tests of rejection, any keys).
func jwksJSON(t testing.TB, keys ...jose.JSONWebKey) string {
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func pub(kid string, k any) jose.JSONWebKey {
	return jose.JSONWebKey{Key: k, KeyID: kid, Use: "sig"}
}

func TestJWKS(t *testing.T) {
	e := newEnv(t, nil)
	ec := ecKey(t)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := jwksJSON(t, pub("ec", &ec.PublicKey), pub("ed", edPub), pub("rsa", &rsaKey.PublicKey))
	unknownKty := strings.Replace(good, `{"use":"sig"`, `{"kty":"XYZ","kid":"future"},{"use":"sig"`, 1)
	e.web.set("/good", route{body: good})
	e.web.set("/jwkset", route{body: good, contentType: "application/jwk-set+json"})
	e.web.set("/unknown-kty", route{body: unknownKty})
	e.web.set("/private-ec", route{body: jwksJSON(t, pub("ec", ec))})
	e.web.set("/private-ed", route{body: jwksJSON(t, pub("ed", edPriv))})
	e.web.set("/private-rsa", route{body: jwksJSON(t, pub("rsa", rsaKey))})
	e.web.set("/symmetric", route{body: jwksJSON(t, pub("hs", []byte("0123456789abcdef0123456789abcdef")))})
	e.web.set("/oct-no-k", route{body: `{"keys":[{"kty":"oct","kid":"x"}]}`})
	e.web.set("/no-keys", route{body: `{"foo":[]}`})
	e.web.set("/bad-ec", route{body: `{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]}`})
	e.web.set("/text", route{body: good, contentType: "text/plain"})

	tests := []struct {
		path string
		want string
		kids []string
	}{
		{"/good", "ok", []string{"ec", "ed", "rsa"}},
		{"/jwkset", "ok", []string{"ec", "ed", "rsa"}},
		{"/unknown-kty", "ok", []string{"ec", "ed", "rsa"}},
		{"/private-ec", "invalid-document", nil},
		{"/private-ed", "invalid-document", nil},
		{"/private-rsa", "invalid-document", nil},
		{"/symmetric", "invalid-document", nil},
		{"/oct-no-k", "invalid-document", nil},
		{"/no-keys", "invalid-document", nil},
		{"/bad-ec", "invalid-document", nil},
		{"/text", "fetch-failed", nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			set, err := e.c.JWKS(bg(), "https://api.example.com"+tt.path)
			if got := outcome(t, err); got != tt.want {
				t.Fatalf("outcome %s (%v), want %s", got, err, tt.want)
			}
			if err != nil {
				return
			}
			var kids []string
			for _, k := range set.Keys {
				if !k.IsPublic() {
					t.Errorf("key %s is not public", k.KeyID)
				}
				kids = append(kids, k.KeyID)
			}
			if fmt.Sprint(kids) != fmt.Sprint(tt.kids) {
				t.Errorf("kids = %v, want %v", kids, tt.kids)
			}
		})
	}
}

func TestLookupKey(t *testing.T) {
	e := newEnv(t, nil)
	k1, k2 := ecKey(t), ecKey(t)
	enc := jose.JSONWebKey{Key: &k2.PublicKey, KeyID: "enc", Use: "enc"}
	e.web.set("/jwks.json", route{body: jwksJSON(t, pub("k1", &k1.PublicKey), enc), cacheControl: "max-age=3600"})

	got, err := e.c.LookupKey(bg(), jwksURL, "k1")
	if err != nil {
		t.Fatal(err)
	}
	if pk, ok := got.Key.(*ecdsa.PublicKey); !ok || !pk.Equal(&k1.PublicKey) {
		t.Errorf("got key %T", got.Key)
	}
	for _, kid := range []string{"", "enc", "nope"} {
		if _, err := e.c.LookupKey(bg(), jwksURL, kid); !errors.Is(err, ErrKeyNotFound) {
			t.Errorf("kid %q: %v, want ErrKeyNotFound", kid, err)
		}
	}
	// Just fetched: the unknown kids did not cause a refetch.
	if n := e.web.hitCount("/jwks.json"); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
	if _, err := e.c.LookupKey(bg(), "http://api.example.com/jwks.json", "k1"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("http JWKS URL: %v", err)
	}
}

// The unknown-kid cooldown: a rotated key is found by one refetch, and a
// flood of random kids from 100 goroutines causes at most one fetch per
// cooldown.
func TestLookupKeyRefetchCooldown(t *testing.T) {
	e := newEnv(t, nil) // cooldown 1 min, JWKS max-age 1 h
	k1, k2 := ecKey(t), ecKey(t)
	const path = "/jwks.json"
	e.web.set(path, route{body: jwksJSON(t, pub("k1", &k1.PublicKey)), cacheControl: "max-age=3600"})
	if _, err := e.c.LookupKey(bg(), jwksURL, "k1"); err != nil {
		t.Fatal(err)
	}

	// Rotation: k2 published; within the cooldown it is not looked for.
	e.web.set(path, route{body: jwksJSON(t, pub("k1", &k1.PublicKey), pub("k2", &k2.PublicKey)), cacheControl: "max-age=3600"})
	e.clk.Advance(30 * time.Second)
	if _, err := e.c.LookupKey(bg(), jwksURL, "k2"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("within cooldown: %v, want ErrKeyNotFound", err)
	}
	if n := e.web.hitCount(path); n != 1 {
		t.Fatalf("within cooldown: %d fetches, want 1", n)
	}
	e.clk.Advance(30 * time.Second)
	if _, err := e.c.LookupKey(bg(), jwksURL, "k2"); err != nil {
		t.Fatalf("after cooldown: %v", err)
	}
	if n := e.web.hitCount(path); n != 2 {
		t.Fatalf("after cooldown: %d fetches, want 2", n)
	}

	// The flood.
	flood := func() {
		t.Helper()
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 100 {
			wg.Go(func() {
				<-start
				_, err := e.c.LookupKey(bg(), jwksURL, fmt.Sprintf("random-%d-%d", i, time.Now().UnixNano()))
				if !errors.Is(err, ErrKeyNotFound) {
					t.Errorf("random kid: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	e.clk.Advance(2 * time.Minute)
	flood()
	if n := e.web.hitCount(path); n != 3 {
		t.Errorf("first flood: %d fetches in all, want 3", n)
	}
	e.clk.Advance(30 * time.Second)
	flood()
	if n := e.web.hitCount(path); n != 3 {
		t.Errorf("second flood within cooldown: %d fetches in all, want 3", n)
	}
	// Known keys are still served from the cache.
	if _, err := e.c.LookupKey(bg(), jwksURL, "k1"); err != nil || e.web.hitCount(path) != 3 {
		t.Errorf("known kid: %v, %d fetches", err, e.web.hitCount(path))
	}

	// A failed refetch is an error, and the cooldown holds after it.
	e.clk.Advance(2 * time.Minute)
	e.web.set(path, route{status: 503})
	if _, err := e.c.LookupKey(bg(), jwksURL, "k3"); !errors.Is(err, ErrFetchFailed) {
		t.Errorf("failed refetch: %v, want ErrFetchFailed", err)
	}
	if _, err := e.c.LookupKey(bg(), jwksURL, "k4"); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("after failed refetch: %v, want ErrKeyNotFound", err)
	}
	if n := e.web.hitCount(path); n != 4 {
		t.Errorf("%d fetches in all, want 4", n)
	}
}

// A no-store JWKS is still held for the MinTTL floor, so random kids cannot
// force a fetch per request.
func TestJWKSNoStoreFloor(t *testing.T) {
	e := newEnv(t, nil)
	k1 := ecKey(t)
	e.web.set("/jwks.json", route{body: jwksJSON(t, pub("k1", &k1.PublicKey)), cacheControl: "no-store"})
	for i := range 50 {
		_, _ = e.c.LookupKey(bg(), jwksURL, fmt.Sprint("r", i))
	}
	if n := e.web.hitCount("/jwks.json"); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}
