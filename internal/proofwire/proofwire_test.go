package proofwire_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/proofwire"
	"github.com/agentpass-go/agentpass/pass"
)

// TestFailReason: a refused proof says which check failed, from the fixed
// set, never more; a replay is 409 (G-3).
func TestFailReason(t *testing.T) {
	e := proofwire.FailReason(pass.CodeInvalidHarnessProof, proofwire.MissingHTM)
	if e.Status != http.StatusUnauthorized || e.Message != "proof refused: missing htm" {
		t.Errorf("%+v", e)
	}
	if e := proofwire.FailReason(pass.CodeInvalidHarnessProof, proofwire.Replayed); e.Status != http.StatusConflict || !errors.Is(e, pass.ErrUnauthenticated) {
		t.Errorf("replay: %+v", e)
	}
}

// TestOf: each failed check of a real harness proof maps to its fixed
// reason; errors of no known check, and foreign errors, are "invalid"; a
// replay is "jti replayed" (G-3).
func TestOf(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	k, err := dpop.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	const svc, url, ap = "https://svc.example.com", "https://svc.example.com/agentpass/redeem-bearer-token", "ap_value"
	replay := dpop.NewMemoryReplayCache(dpop.WithLimit(10), dpop.WithClock(clock))
	v, err := dpop.NewProofVerifier(dpop.ProofVerifierConfig{Audience: svc, Replay: replay, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	req := dpop.ProofRequest{Method: "POST", URL: url, AgentPass: ap, RequireBinding: true}
	mk := func(p dpop.ProofParams) string {
		p.HarnessID, p.Now = "h1", now
		if p.Audience == "" {
			p.Audience = svc
		}
		s, err := k.HarnessProof(p)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := mk(dpop.ProofParams{Method: "POST", URL: url, AgentPass: ap})
	if _, err := v.Verify(context.Background(), good, k.PublicJSON(), req); err != nil {
		t.Fatalf("good proof refused: %v", err)
	}
	_, err = v.Precheck(context.Background(), good, req)
	if got := proofwire.Of(err); got != proofwire.Replayed {
		t.Errorf("replayed proof: reason %q (%v), want %q", got, err, proofwire.Replayed)
	}
	for _, tc := range []struct {
		name  string
		proof string
		want  proofwire.Reason
	}{
		{"wrong htu", mk(dpop.ProofParams{Method: "POST", URL: svc + "/other", AgentPass: ap}), proofwire.WrongHTU},
		{"wrong htm", mk(dpop.ProofParams{Method: "PUT", URL: url, AgentPass: ap}), proofwire.WrongHTM},
		{"wrong aph", mk(dpop.ProofParams{Method: "POST", URL: url, AgentPass: "other"}), proofwire.WrongAPH},
		{"wrong aud", mk(dpop.ProofParams{Audience: "https://other.example.com", Method: "POST", URL: url, AgentPass: ap}), proofwire.WrongAudience},
		{"binding missing", mk(dpop.ProofParams{Method: "POST"}), proofwire.MissingHTU},
		{"garbage", "a.b.c", proofwire.Malformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Precheck(context.Background(), tc.proof, req)
			if got := proofwire.Of(err); got != tc.want {
				t.Errorf("reason %q, want %q (%v)", got, tc.want, err)
			}
			if e := proofwire.Fail(pass.CodeInvalidHarnessProof, err); e.Message != "proof refused: "+string(tc.want) {
				t.Errorf("wire message %q", e.Message)
			}
		})
	}
	if got := proofwire.Of(fmt.Errorf("wrapped: %w", errors.New("anything"))); got != proofwire.Invalid {
		t.Errorf("foreign error: %q, want %q", got, proofwire.Invalid)
	}
}
