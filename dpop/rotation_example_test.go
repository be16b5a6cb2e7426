package dpop_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/agentpass-go/agentpass/dpop"
)

// writeKey writes a new ES256 key as `agentpass keygen` does: PKCS#8 PEM,
// readable by its owner only.
func writeKey(path string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		log.Fatal(err)
	}
}

// Rotating the signing key of replicas in three deployments (see
// docs/keys.md): publish the next key, then sign with it while the old
// one stays published, then drop the old one.
func ExampleLoadKeySet_rotation() {
	dir, _ := os.MkdirTemp("", "keys")
	defer os.RemoveAll(dir)
	old, next := filepath.Join(dir, "old.pem"), filepath.Join(dir, "next.pem")
	writeKey(old)
	writeKey(next)

	kid := func(path string) string { ks, _ := dpop.LoadKeySet(path); return ks.Current().KeyID() }
	oldKid, nextKid := kid(old), kid(next)
	state := func(ks *dpop.KeySet) string {
		_, o := ks.PublicKey(oldKid)
		_, n := ks.PublicKey(nextKid)
		signer := "old"
		if ks.Current().KeyID() == nextKid {
			signer = "next"
		}
		return fmt.Sprintf("%s signs; published: old %v, next %v", signer, o, n)
	}

	// 1. Every replica publishes next; old still signs.
	ks, _ := dpop.LoadKeySet(old, next)
	fmt.Println("1.", state(ks))

	// 2. Once every replica runs 1: next signs, old stays published for
	// what it signed.
	ks, _ = dpop.LoadKeySet(next, old)
	fmt.Println("2.", state(ks))

	// 3. Later than the longest assertion lifetime plus the verifiers'
	// caches: old is gone.
	ks, _ = dpop.LoadKeySet(next)
	fmt.Println("3.", state(ks))
	// Output:
	// 1. old signs; published: old true, next true
	// 2. next signs; published: old true, next true
	// 3. next signs; published: old false, next true
}
