package dpop_test

import (
	"testing"

	"github.com/agentpass-go/agentpass/dpop"
)

// The zero KeySet is empty, not broken: it publishes no key, finds none,
// and takes its first key from Rotate (#14 finding 8).
func TestZeroKeySet(t *testing.T) {
	var ks dpop.KeySet
	if ks.Current() != nil {
		t.Fatal("zero KeySet has a current key")
	}
	if n := len(ks.JWKS().Keys); n != 0 {
		t.Fatalf("zero KeySet publishes %d keys", n)
	}
	if _, ok := ks.PublicKey("k"); ok {
		t.Fatal("zero KeySet found a key")
	}
	if ks.Remove("k") {
		t.Fatal("zero KeySet removed a key")
	}
	k, err := dpop.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	ks.Rotate(k)
	if ks.Current() != k || len(ks.JWKS().Keys) != 1 {
		t.Fatalf("after Rotate: current %v, %d published keys; want the key, 1", ks.Current(), len(ks.JWKS().Keys))
	}
}
