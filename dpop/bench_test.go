package dpop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Benchmarks: each proof's create and verify next to raw ES256 sign and
// verify with crypto/ecdsa, so the ratio shows our overhead over the
// crypto. Verify benchmarks use a replay cache that never reports a replay
// (the same token is verified b.N times); BenchmarkMemoryReplayCacheSeen
// measures the cache on its own.

type freshReplay struct{}

func (freshReplay) Seen(context.Context, string, string, time.Time) (bool, error) { return false, nil }

// A signing input of the size of a typical harness proof.
var rawInput = make([]byte, 330)

func BenchmarkRawES256Sign(b *testing.B) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b.ReportAllocs()
	for b.Loop() {
		h := sha256.Sum256(rawInput)
		if _, err := ecdsa.SignASN1(rand.Reader, priv, h[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawES256Verify(b *testing.B) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h := sha256.Sum256(rawInput)
	sig, _ := ecdsa.SignASN1(rand.Reader, priv, h[:])
	b.ReportAllocs()
	for b.Loop() {
		h := sha256.Sum256(rawInput)
		if !ecdsa.VerifyASN1(&priv.PublicKey, h[:], sig) {
			b.Fatal("verify failed")
		}
	}
}

func benchProofParams() ProofParams {
	return ProofParams{HarnessID: harnessID, Audience: svcOrigin, Method: "POST", URL: redeemURL, AgentPass: passValue, Now: t0}
}

func BenchmarkHarnessProofCreate(b *testing.B) {
	k := mustKey(b, "")
	p := benchProofParams()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.HarnessProof(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHarnessProofVerify(b *testing.B) {
	k := mustKey(b, "")
	tok, _ := k.HarnessProof(benchProofParams())
	cnf := k.PublicJSON()
	v := mustProofVerifier(b, ProofVerifierConfig{Audience: svcOrigin, Replay: freshReplay{}, Now: fixed(t0)})
	req := proofReq
	req.RequireBinding = true
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok, cnf, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServiceHarnessProof is the Service's redemption path: Precheck
// before the pass is consumed, Complete once cnf is known, one parse.
func BenchmarkServiceHarnessProof(b *testing.B) {
	k := mustKey(b, "")
	tok, _ := k.HarnessProof(benchProofParams())
	cnf := k.PublicJSON()
	v := mustProofVerifier(b, ProofVerifierConfig{Audience: svcOrigin, Replay: freshReplay{}, Now: fixed(t0)})
	req := proofReq
	req.RequireBinding = true
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, err := v.Precheck(context.Background(), tok, proofReq)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.Complete(ctx, p, cnf, req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTaskAttestationCreate(b *testing.B) {
	k := mustKey(b, "")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.TaskAttestation(harnessID, taskID, taskDesc, 0, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTaskAttestationVerify(b *testing.B) {
	k := mustKey(b, "")
	tok, _ := k.TaskAttestation(harnessID, taskID, taskDesc, 0, t0)
	cnf := k.PublicJSON()
	b.ReportAllocs()
	for b.Loop() {
		if err := VerifyTaskAttestation(tok, cnf, harnessID, taskID, taskDesc, t0, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDPoPCreate(b *testing.B) {
	k := mustKey(b, "")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.DPoPProof("GET", apiURL, accessToken, "", t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDPoPVerify(b *testing.B) {
	k := mustKey(b, "")
	tok, _ := k.DPoPProof("GET", apiURL, accessToken, "", t0)
	v := mustDPoPVerifier(b, DPoPVerifierConfig{Replay: freshReplay{}, Now: fixed(t0)})
	jkt := k.Thumbprint()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok, "GET", apiURL, accessToken, jkt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAttestationVerify(b *testing.B) {
	vendor, holder := mustKey(b, ""), mustKey(b, "")
	tok, _ := vendor.HarnessAttestation(vendorIss, harnessID, holder.PublicJSON(), 0, t0)
	v := mustAttestationVerifier(b, AttestationVerifierConfig{
		Attesters: []Attester{{Issuer: vendorIss, Keys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{vendor.Public()}}}},
		Now:       fixed(t0),
	})
	h := harnessWith(holder, tok)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMemoryReplayCacheSeen(b *testing.B) {
	c := NewMemoryReplayCache(WithLimit(1<<20), WithClock(fixed(t0)))
	ctx := context.Background()
	jtis := make([]string, 1<<16)
	for i := range jtis {
		jtis[i], _ = newJTI()
	}
	exp := t0.Add(time.Minute)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := c.Seen(ctx, harnessID, jtis[i%len(jtis)], exp); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
