package httpx

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// FuzzAppendDocument: the documents of validation and redemption written
// without reflection (#19 item 2) are, whenever appendDocument writes
// them, the bytes encoding/json writes; it declines only values it does
// not write that way, and declines for no plain value.
func FuzzAppendDocument(f *testing.F) {
	f.Add("ap_x", "alex@example.com", `{"kty":"EC","crv":"P-256","x":"a","y":"b"}`, int64(1764151200), uint16(0xffff))
	f.Add("a<b", "é", `{ "kty" : "EC" }`, int64(-62135596800), uint16(0))
	f.Add("v", "x@y", `null`, int64(253402300800), uint16(0x5555))
	f.Add("", "", ``, int64(0), uint16(0xaaaa))
	f.Add("q\"", "\u2028", `{"k":"<"}`, int64(42), uint16(0x0f0f))
	f.Fuzz(func(t *testing.T, a, b, raw string, n int64, flags uint16) {
		bit := func(i int) bool { return flags&(1<<i) != 0 }
		exp := time.Unix(n, n%1e9)
		if !bit(0) {
			exp = exp.UTC()
		}
		var jwk json.RawMessage
		if bit(1) {
			jwk = json.RawMessage(raw)
		}
		scope := pass.Scope{a, b}
		if bit(2) {
			scope = nil
		}
		vr := &pass.ValidationResponse{AuthorizationID: a, User: pass.User{Email: b}, Agent: pass.Agent{ID: a}, Scope: scope, Type: pass.PassType(b)}
		if bit(3) {
			vr.DestinationURL = b
			vr.Cnf = &pass.Cnf{JWK: jwk}
			vr.AuthorizationExpiresAt = &exp
		}
		if bit(4) {
			vr.Task = &pass.Task{ID: a, Attested: bit(5)}
			if bit(6) {
				vr.Task.Description, vr.Task.Class, vr.Task.Attestation = b, a, &pass.JWTContainer{JWT: b}
			}
		}
		if bit(7) {
			vr.Harness = &pass.HarnessRef{ID: a}
			if bit(8) {
				vr.Harness.Extensions = pass.HarnessExtensions{b}
			}
		}
		if bit(9) {
			vr.Mission = &pass.MissionInfo{ID: a, State: pass.MissionState(b), Version: n}
			if bit(10) {
				vr.Mission.Stage, vr.Mission.Parent, vr.Mission.HistoryHead = b, a, b
			}
			if bit(11) {
				vr.Mission.Ceiling = scope
			}
		}
		secs := n
		bt := &pass.BearerTokenResponse{BearerToken: a}
		if bit(12) {
			bt.Scope, bt.ExpiresIn, bt.TokenType = scope, &secs, b
		}
		rr := pass.RedemptionRequest{AgentPass: pass.AgentPass{Type: pass.PassType(a), Value: b}, Authority: a, User: pass.User{Email: b}}
		if bit(13) {
			rr.HarnessProof, rr.RequestedScope, rr.InitializationMethods = &pass.JWTContainer{JWT: a}, scope, []string{b}
		}
		plain := plainValue(a) && plainValue(b)
		for _, v := range []any{vr, bt, rr, pass.ValidationRequest{AgentPass: pass.PassValue{Value: a}}} {
			got, ok := appendDocument(nil, v)
			want, err := json.Marshal(v)
			if !ok {
				_, isVR := v.(*pass.ValidationResponse)
				if plain && !isVR {
					t.Fatalf("%T with plain values declined", v)
				}
				continue
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%T:\nappendDocument %s\nencoding/json  %s (%v)", v, got, want, err)
			}
		}
	})
}

func plainValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// TestAppendDocumentAllocs: an answer is written into the pooled buffer
// and a request into one buffer of its size.
func TestAppendDocumentAllocs(t *testing.T) {
	exp := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	secs := int64(3600)
	vr := &pass.ValidationResponse{AuthorizationID: "authz_1", User: pass.User{Email: "alex@example.com"}, Agent: pass.Agent{ID: "agent:x"},
		Scope: pass.Scope{"tickets:read"}, Type: pass.BearerToken, Cnf: &pass.Cnf{JWK: json.RawMessage(`{"kty":"EC","crv":"P-256","x":"a","y":"b"}`)},
		Task: &pass.Task{ID: "t", Description: "d"}, AuthorizationExpiresAt: &exp, Harness: &pass.HarnessRef{ID: "h"},
		Mission: &pass.MissionInfo{ID: "msn_1", State: pass.MissionActive, Version: 1, HistoryHead: "sha256:00"}}
	buf := make([]byte, 0, 4096)
	for _, v := range []any{vr, &pass.BearerTokenResponse{BearerToken: "apt_x", Scope: pass.Scope{"a"}, ExpiresIn: &secs, TokenType: "DPoP"}} {
		if n := testing.AllocsPerRun(100, func() {
			if _, ok := appendDocument(buf[:0], v); !ok {
				t.Fatalf("%T declined", v)
			}
		}); n != 0 {
			t.Errorf("%T: %v allocations, want 0 (encoding/json: the encoder's scope and time copies)", v, n)
		}
	}
	rr := pass.RedemptionRequest{AgentPass: pass.AgentPass{Type: pass.BearerToken, Value: "ap_x"}, Authority: "https://a.example.com",
		User: pass.User{Email: "alex@example.com"}, HarnessProof: &pass.JWTContainer{JWT: string(bytes.Repeat([]byte("a"), 900))}}
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := appendDocument(make([]byte, 0, requestSize(rr)), rr); !ok {
			t.Fatal("declined")
		}
	}); n != 1 {
		t.Errorf("RedemptionRequest: %v allocations, want 1", n)
	}
}
