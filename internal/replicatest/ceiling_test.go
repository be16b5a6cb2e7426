package replicatest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/dpop"
)

// ceiling is an operation's signatures and HTTPS calls with nothing else
// around them: the Service's signature and the Authority's verification
// of it, the Service's verification of a holder proof for a redemption,
// and the same loopback HTTPS calls as the real operation with bodies and
// an Authorization header of the same sizes, but no JSON, no claims, no
// store, no replay cache and no token. Its %bound is the most any
// implementation on Go's net/http, crypto/tls and crypto/ecdsa reaches on
// this machine, against which the real operations' figures are read: what
// separates them is the protocol's own work.
type ceiling struct {
	// client is the Harness's, like the real benchmark's caller; the
	// Service calls the Authority with authorityClient, which like the
	// roles' own clients asks for no compression.
	client, authorityClient *http.Client
	role, holder            signer
	proof                   []byte // one holder proof's signature, verified per redemption

	authorityURL, serviceURL string
	// The bodies of a real validation and redemption, and the length of a
	// real assertion, which carries the ceiling's signature instead.
	validateBody, validateAnswer, redeemBody, redeemAnswer []byte
	bearerLen                                              int
}

func (d *deployment) newCeiling(tb testing.TB, key *dpop.Key, alg string) *ceiling {
	tb.Helper()
	tr := d.client.Transport.(*http.Transport).Clone()
	tr.DisableCompression = true
	c := &ceiling{client: d.client, authorityClient: &http.Client{Timeout: d.client.Timeout, Transport: tr},
		role: newSigner(tb, alg), holder: newSigner(tb, "ES256")}
	c.proof = c.holder.sign(c.holder.input)
	var bearer string
	c.validateBody, c.validateAnswer, bearer = d.floorExchange(tb, key)
	c.bearerLen = len(bearer)
	req := d.redemptions(tb, key, d.storePasses(tb, 1, key))[0]
	var err error
	if c.redeemBody, err = json.Marshal(req); err != nil {
		tb.Fatal(err)
	}
	answer, err := d.redeem(tb.Context(), -1, req)
	if err != nil {
		tb.Fatal(err)
	}
	if c.redeemAnswer, err = json.Marshal(answer); err != nil {
		tb.Fatal(err)
	}
	c.authorityURL = d.net.Serve("ceiling-authority.test", http.HandlerFunc(c.serveAuthority)) + "/validate"
	c.serviceURL = d.net.Serve("ceiling-service.test", http.HandlerFunc(c.serveService)) + "/redeem"
	// Warmed as the real deployment is (see fresh): a few calls of each.
	for range 4 {
		if err := c.validate(tb.Context(), c.client); err != nil {
			tb.Fatal(err)
		}
		if err := c.redeem(tb.Context()); err != nil {
			tb.Fatal(err)
		}
	}
	return c
}

// validate is one validation's share, made with client: sign, call,
// verify, answer.
func (c *ceiling) validate(ctx context.Context, client *http.Client) error {
	return c.post(ctx, client, c.authorityURL, c.validateBody, "Bearer "+c.bearer(c.role.sign(c.role.input)))
}

// redeem is one redemption's share: the Harness's call to the Service,
// which verifies the proof and makes a validation of its own.
func (c *ceiling) redeem(ctx context.Context) error {
	return c.post(ctx, c.client, c.serviceURL, c.redeemBody, "")
}

func (c *ceiling) serveAuthority(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, io.LimitReader(r.Body, 1<<16)); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sig, err := c.signature(r.Header.Get("Authorization"))
	if err != nil || !c.role.verify(c.role.input, sig) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(c.validateAnswer)
}

func (c *ceiling) serveService(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, io.LimitReader(r.Body, 1<<16)); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !c.holder.verify(c.holder.input, c.proof) {
		http.Error(w, "bad proof", http.StatusUnauthorized)
		return
	}
	if err := c.validate(r.Context(), c.authorityClient); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(c.redeemAnswer)
}

// bearer carries sig in a token of a real assertion's length.
func (c *ceiling) bearer(sig []byte) string {
	tok := base64.RawURLEncoding.EncodeToString(sig) + "."
	return tok + strings.Repeat("x", max(c.bearerLen-len(tok), 0))
}

func (c *ceiling) signature(authorization string) ([]byte, error) {
	tok, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok {
		return nil, errors.New("no bearer token")
	}
	sig, _, _ := strings.Cut(tok, ".")
	return base64.RawURLEncoding.DecodeString(sig)
}

func (c *ceiling) post(ctx context.Context, client *http.Client, url string, body []byte, authorization string) error {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	resp, err := client.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16)); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ceiling: %s: status %d", url, resp.StatusCode)
	}
	return nil
}

// TestCeiling: the ceiling's parties refuse a wrong signature, so that its
// figure includes real verifications.
func TestCeiling(t *testing.T) {
	d := deploy(t, options{replicas: 1})
	key, err := dpop.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	c := d.newCeiling(t, key, "ES256")
	if err := c.validate(t.Context(), c.client); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if err := c.redeem(t.Context()); err != nil {
		t.Fatalf("redeem: %v", err)
	}
	other := newSigner(t, "ES256")
	if err := c.post(t.Context(), c.client, c.authorityURL, c.validateBody, "Bearer "+c.bearer(other.sign(other.input))); err == nil || !strings.Contains(err.Error(), "status 401") {
		t.Errorf("a signature of another key: %v, want status 401", err)
	}
	c.proof = other.sign(other.input)
	if err := c.redeem(t.Context()); err == nil || !strings.Contains(err.Error(), "status 401") {
		t.Errorf("a proof of another key: %v, want status 401", err)
	}
	if got, want := len(c.bearer(c.role.sign(c.role.input))), c.bearerLen; got != want {
		t.Errorf("ceiling bearer: %d bytes, want a real assertion's %d", got, want)
	}
}
