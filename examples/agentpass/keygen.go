package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/agentpass-go/agentpass/dpop"
)

// keygen writes a new signing key for a Service or an Authority (its
// Config.Keys, through dpop.LoadKeySet) as PKCS#8 PEM, readable by its
// owner only, and prints the public JWK and its RFC 7638 thumbprint (the
// kid the key set publishes).
func (c *cli) keygen(args []string) error {
	fs := c.flags("keygen")
	alg := fs.String("alg", "ES256", "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return &usageError{"keygen needs one file to write, e.g. keygen service-key.pem"}
	}
	var priv any
	switch strings.ToUpper(*alg) {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ED25519", "EDDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return &usageError{fmt.Sprintf("-alg %q: want ES256 or Ed25519", *alg)}
	}
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	// The same parser the roles use, so what is printed is what they publish.
	key, _, err := dpop.ParseKey(data)
	if err != nil {
		return err
	}
	// O_EXCL: never overwrite a key, which would lose the one in use.
	f, err := os.OpenFile(pos[0], os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists: keygen never overwrites a key", pos[0])
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(pos[0])
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if c.json {
		c.printJSON(map[string]any{"file": pos[0], "thumbprint": key.Thumbprint(), "jwk": key.PublicJSON()})
		return nil
	}
	jwk, _ := json.Marshal(key.PublicJSON())
	fmt.Fprintf(c.stdout, "wrote %s (mode 0600)\npublic JWK  %s\nthumbprint  %s  (RFC 7638; the kid in your JWKS)\n", pos[0], jwk, key.Thumbprint())
	fmt.Fprintf(c.stdout, "load it with dpop.LoadKeySet(%q) into Config.Keys\n", pos[0])
	return nil
}
