package dpop

import (
	"github.com/agentpass-go/agentpass/internal/jwtcheck"

	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

const (
	taskID   = "task_9a8b7c6d5e4f"
	taskDesc = "Triage and respond to open support tickets"
)

// G-22: the correct hash of the Appendix B description; the example's own
// 32-digit value is wrong.
func TestDescriptionHash(t *testing.T) {
	const want = "a28116dee4477ff5ee9e0bbb187b9d2cf770b4f77565858021767f0d89cf5573"
	if got := DescriptionHash(taskDesc); got != want {
		t.Errorf("DescriptionHash = %q, want %q", got, want)
	}
	// Exact bytes: no trimming or normalisation.
	if DescriptionHash(taskDesc+" ") == want || DescriptionHash("Cafe\u0301") == DescriptionHash("Caf\u00e9") {
		t.Error("DescriptionHash normalises its input")
	}
}

func baseTaskClaims() map[string]any {
	return map[string]any{
		"iss": harnessID, "task_id": taskID, "task_description_hash": DescriptionHash(taskDesc),
		"iat": t0.Unix(), "exp": t0.Add(60 * time.Second).Unix(),
	}
}

var taskHeader = map[string]any{"typ": typeTaskAttestation}

// TATT-2, TATT-4: a Harness-built attestation carries every claim and
// verifies with harness.cnf.jwk.
func TestTaskAttestationRoundTrip(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k := mustKey(t, alg)
			tok, err := k.TaskAttestation(harnessID, taskID, taskDesc, 0, t0)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyTaskAttestation(tok, k.PublicJSON(), harnessID, taskID, taskDesc, t0.Add(time.Second), 0); err != nil {
				t.Fatal(err)
			}
			tt, err := jwtcheck.Parse(tok, jwtcheck.TaskAttestation)
			if err != nil {
				t.Fatal(err)
			}
			c := &tt.Claims
			if c.Issuer != harnessID || *c.TaskID != taskID || len(*c.TaskDescriptionHash) != 64 ||
				c.Expiry.Time().Sub(c.IssuedAt.Time()) > 300*time.Second || tt.Typ != typeTaskAttestation {
				t.Errorf("claims = %+v, typ %q", c, tt.Typ)
			}
		})
	}
	k := mustKey(t, "")
	if _, err := k.TaskAttestation("", taskID, taskDesc, 0, t0); err == nil {
		t.Error("empty harness id accepted")
	}
}

// One row per rejection and the accepting cases (TATT-5..TATT-11, G-6,
// G-7, G-8, G-22).
func TestVerifyTaskAttestation(t *testing.T) {
	k := mustKey(t, "ES256")
	other := mustKey(t, "ES256")
	good := func(t *testing.T) string { return craft(t, k, taskHeader, baseTaskClaims(), nil) }
	tests := []struct {
		name      string
		token     func(t *testing.T) string
		cnf       json.RawMessage // k's key when nil
		harness   string          // harnessID when empty
		task      string          // taskID when empty
		desc      *string
		now       time.Time
		reason    string
		accept    bool
		rejectKey bool
	}{
		{name: "accept", token: good, accept: true},
		{name: "accept: no typ, upper-case hex", accept: true, token: func(t *testing.T) string {
			return craft(t, k, nil, with(baseTaskClaims(), "task_description_hash", strings.ToUpper(DescriptionHash(taskDesc))), nil)
		}},
		{name: "no harness.cnf (TATT-5)", cnf: json.RawMessage{}, token: good, reason: "requires holder binding"},
		{name: "wrong key (TATT-6)", cnf: other.PublicJSON(), token: good, reason: "bad signature"},
		{name: "tampered (TATT-6)", token: func(t *testing.T) string { return tamper(good(t)) }},
		{name: "task_id mismatch (TATT-7)", task: "t2", token: good, reason: "task_id mismatch"},
		{name: "description hash mismatch (TATT-8)", desc: ptr(taskDesc + "!"), token: good, reason: "task_description_hash mismatch"},
		{name: "Appendix B 32-digit hash (G-22)", token: func(t *testing.T) string {
			return craft(t, k, taskHeader, with(baseTaskClaims(), "task_description_hash", "a7ffc6f038c43290afd3a588f87a224c"), nil)
		}, reason: "task_description_hash mismatch"},
		{name: "iss mismatch (TATT-9)", harness: "other-harness", token: good, reason: "iss mismatch"},
		{name: "expired (TATT-10)", now: t0.Add(121 * time.Second), token: good, reason: "expired"},
		{name: "future iat", now: t0.Add(-61 * time.Second), token: good, reason: "iat in the future"},
		{name: "lifetime above 300 s", token: func(t *testing.T) string {
			return craft(t, k, taskHeader, with(baseTaskClaims(), "exp", t0.Add(time.Hour).Unix()), nil)
		}, reason: "lifetime"},
		{name: "missing exp", token: func(t *testing.T) string {
			return craft(t, k, taskHeader, with(baseTaskClaims(), "exp", nil), nil)
		}, reason: "missing exp"},
		{name: "missing iss", token: func(t *testing.T) string {
			return craft(t, k, taskHeader, with(baseTaskClaims(), "iss", nil), nil)
		}, reason: "missing iss"},
		{name: "kind confusion: a harness proof", token: func(t *testing.T) string {
			return craft(t, k, nil, baseProofClaims(), nil)
		}, reason: "missing task_id"},
		{name: "kind confusion: proof typ", token: func(t *testing.T) string {
			return craft(t, k, proofHeader, baseTaskClaims(), nil)
		}, reason: "wrong typ"},
		{name: "alg none", token: func(t *testing.T) string {
			return craft(t, nil, map[string]any{"alg": "none"}, baseTaskClaims(), nil)
		}, reason: "not allowed"},
		{name: "HS256 with the public key bytes", token: func(t *testing.T) string {
			return craft(t, nil, map[string]any{"alg": "HS256"}, baseTaskClaims(), k.PublicJSON())
		}, reason: "not allowed"},
		{name: "x5c header", token: func(t *testing.T) string {
			return craft(t, k, map[string]any{"x5c": []string{"MII"}}, baseTaskClaims(), nil)
		}, reason: "forbidden header x5c"},
		{name: "private cnf", cnf: json.RawMessage(`{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}`), token: good, reason: "harness.cnf.jwk"},
		{name: "empty task id expectation", task: "-", token: good, reason: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cnf := tt.cnf
			if cnf == nil {
				cnf = k.PublicJSON()
			}
			h, task, desc, now := harnessID, taskID, taskDesc, t0
			if tt.harness != "" {
				h = tt.harness
			}
			if tt.task == "-" {
				task = ""
			} else if tt.task != "" {
				task = tt.task
			}
			if tt.desc != nil {
				desc = *tt.desc
			}
			if !tt.now.IsZero() {
				now = tt.now
			}
			err := VerifyTaskAttestation(tt.token(t), cnf, h, task, desc, now, 0)
			if tt.accept {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			wantReason(t, err, ErrInvalidTaskAttestation, tt.reason)
		})
	}
}

// The Appendix B example is a negative vector: placeholder signature and a
// wrong hash (G-22).
func TestTaskAttestationAppendixB(t *testing.T) {
	data, err := os.ReadFile("testdata/appendix-b-issuance-request.json")
	if err != nil {
		t.Fatal(err)
	}
	var req pass.IssuanceRequest
	if err := json.Unmarshal(data, &req); err != nil {
		t.Fatal(err)
	}
	err = VerifyTaskAttestation(req.Task.Attestation.JWT, req.Harness.Cnf.JWK, req.Harness.ID, req.Task.ID,
		req.Task.Description, time.Unix(1705309300, 0), 0)
	wantReason(t, err, ErrInvalidTaskAttestation, "")
}

func ptr[T any](v T) *T { return &v }
