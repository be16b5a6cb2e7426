package dpop_test

import (
	"context"
	"fmt"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/go-jose/go-jose/v4"
)

// A Harness binds a pass to its ephemeral key and proves possession at
// redemption; the Service verifies the proof against the cnf.jwk the
// Authority returned at validation. The clock is fixed so the output is
// stable.
func Example() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	// Harness: one key per task; its public JWK goes in harness.cnf.jwk.
	key, err := dpop.GenerateKey("ES256")
	if err != nil {
		panic(err)
	}
	cnf := key.PublicJSON()

	// Harness, at redemption: a fresh proof per request.
	proof, err := key.HarnessProof(dpop.ProofParams{
		HarnessID: "build-bot-7f2c",
		Audience:  "https://api.example.com",
		Method:    "POST",
		URL:       "https://api.example.com/agentpass/redeem-bearer-token",
		AgentPass: "ap_8f3a1b2c4d5e",
		Now:       now,
	})
	if err != nil {
		panic(err)
	}

	// Service: verify against cnf.jwk from the validation response.
	clock := func() time.Time { return now.Add(2 * time.Second) }
	v, err := dpop.NewProofVerifier(dpop.ProofVerifierConfig{
		Audience: "https://api.example.com",
		Replay:   dpop.NewMemoryReplayCache(dpop.WithClock(clock)), // same clock as the verifier
		Now:      clock,
	})
	if err != nil {
		panic(err)
	}
	req := dpop.ProofRequest{
		Method:         "POST",
		URL:            "https://api.example.com/agentpass/redeem-bearer-token",
		AgentPass:      "ap_8f3a1b2c4d5e",
		RequireBinding: true,
	}
	claims, err := v.Verify(context.Background(), proof, cnf, req)
	if err != nil {
		panic(err)
	}
	fmt.Println("proof from", claims.Issuer, "for", claims.Audience)

	// The same proof a second time is a replay.
	_, err = v.Verify(context.Background(), proof, cnf, req)
	fmt.Println(err)
	// Output:
	// proof from build-bot-7f2c for https://api.example.com
	// dpop: invalid harness proof: jti replayed: dpop: replayed jti
}

// The Harness attests its task with the holder key; the Authority checks
// every step of §3.1.3 before issuing a pass.
func ExampleVerifyTaskAttestation() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	key, _ := dpop.GenerateKey("")
	const description = "Triage and respond to open support tickets"
	jwt, _ := key.TaskAttestation("build-bot-7f2c", "task_9a8b7c6d5e4f", description, 0, now)

	err := dpop.VerifyTaskAttestation(jwt, key.PublicJSON(), "build-bot-7f2c", "task_9a8b7c6d5e4f", description, now, 0)
	fmt.Println("attested:", err == nil)

	err = dpop.VerifyTaskAttestation(jwt, key.PublicJSON(), "build-bot-7f2c", "task_9a8b7c6d5e4f", description+"!", now, 0)
	fmt.Println(err)
	// Output:
	// attested: true
	// dpop: invalid task attestation: task_description_hash mismatch
}

func ExampleDescriptionHash() {
	fmt.Println(dpop.DescriptionHash("Triage and respond to open support tickets"))
	// Output: a28116dee4477ff5ee9e0bbb187b9d2cf770b4f77565858021767f0d89cf5573
}

// An Authority trusts attestations only from issuers it pins; an unknown
// issuer is refused without any network call.
func ExampleAttestationVerifier_Verify() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	vendor, _ := dpop.GenerateKey("EdDSA") // the attestation vendor's key
	holder, _ := dpop.GenerateKey("")      // the Harness's holder key
	attestation, _ := vendor.HarnessAttestation("https://vendor.example", "build-bot-7f2c", holder.PublicJSON(), 0, now)

	v, err := dpop.NewAttestationVerifier(dpop.AttestationVerifierConfig{
		Attesters: []dpop.Attester{{
			Issuer: "https://vendor.example",
			Keys:   &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{vendor.Public()}},
		}},
		Now: func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}
	id, err := v.Verify(context.Background(), pass.HarnessInfo{
		ID:          "build-bot-7f2c",
		Cnf:         &pass.Cnf{JWK: holder.PublicJSON()},
		Attestation: &pass.JWTContainer{JWT: attestation},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(id.Tier, id.AgentID, id.Issuer)

	// Without attestation (and no registered key) the tier is unverified.
	id, _ = v.Verify(context.Background(), pass.HarnessInfo{ID: "my-laptop", Cnf: &pass.Cnf{JWK: holder.PublicJSON()}})
	fmt.Println(id.Tier, id.AgentID)
	// Output:
	// attested build-bot-7f2c https://vendor.example
	// unverified my-laptop
}

// A Service issues a DPoP-bound token (cnf.jkt) and checks the DPoP proof
// on every API call.
func ExampleDPoPVerifier_Verify() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	key, _ := dpop.GenerateKey("")
	clock := func() time.Time { return now }
	v, err := dpop.NewDPoPVerifier(dpop.DPoPVerifierConfig{Replay: dpop.NewMemoryReplayCache(dpop.WithClock(clock)), Now: clock})
	if err != nil {
		panic(err)
	}

	// Token endpoint: no token yet; bind the new token to the proof's key.
	proof, _ := key.DPoPProof("POST", "https://api.example.com/token", "", "", now)
	c, err := v.Verify(context.Background(), proof, "POST", "https://api.example.com/token", "", "")
	if err != nil {
		panic(err)
	}
	jkt := c.JKT // store as the token's cnf.jkt
	const token = "at_example"

	// API call: the proof must carry ath and come from the bound key.
	proof, _ = key.DPoPProof("GET", "https://api.example.com/tickets?page=2", token, "", now)
	_, err = v.Verify(context.Background(), proof, "GET", "https://api.example.com/tickets", token, jkt)
	fmt.Println("bound to the key:", err == nil, jkt == key.Thumbprint())
	// Output: bound to the key: true true
}

// Rotation keeps the previous key published, so assertions it signed keep
// verifying until it is removed.
func ExampleKeySet_Rotate() {
	ks, _ := dpop.GenerateKeySet()
	old := ks.Current()
	next, _ := dpop.GenerateKey("")
	ks.Rotate(next)
	fmt.Println(len(ks.JWKS().Keys), ks.Current() == next)
	_, published := ks.PublicKey(old.KeyID())
	fmt.Println("old key still published:", published)
	ks.Remove(old.KeyID())
	fmt.Println(len(ks.JWKS().Keys))
	// Output:
	// 2 true
	// old key still published: true
	// 1
}
