package replicatest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
)

// TestValidateSpendsAssertionFirst (#19 item 6): on the shared replay
// table the Authority records a validation's assertion before it consumes
// the pass, in one round trip with no lookup before it. A replayed
// assertion is still refused before anything is consumed, and a
// consumption that fails after the record answers its own error.
func TestValidateSpendsAssertionFirst(t *testing.T) {
	d := deploy(t, options{replicas: 2, postgres: true})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	key, err := dpop.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	values := d.storePasses(t, 3, key)
	sign := func() string {
		t.Helper()
		tok, err := assertion.Sign(d.serviceKeys.Current(), appOrigin, authorityID, 0, d.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	validate := func(tok, value string) error {
		_, err := httpx.Do(ctx, d.client, httpx.Call{
			URL: d.validateURL, Bearer: tok,
			Body: pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}},
		}, &pass.ValidationResponse{})
		return err
	}
	code := func(err error) pass.Code {
		var pe *pass.PeerError
		if errors.As(err, &pe) {
			return pe.Code
		}
		return ""
	}

	first, unknown := sign(), sign()
	for _, tc := range []struct {
		name, tok, value string
		want             pass.Code // "" for success
	}{
		{"fresh", first, values[0], ""},
		// A replay with a pass that is still good (at either replica):
		// refused, and the pass stays unconsumed.
		{"replayed", first, values[1], pass.CodeInvalidAssertion},
		{"consumed pass", sign(), values[0], pass.CodeAgentPassConsumed},
		{"unknown pass", unknown, "ap_made-up", pass.CodeAgentPassInvalid},
		// Spent on the unknown pass: recorded all the same.
		{"spent on a failure", unknown, values[2], pass.CodeInvalidAssertion},
		{"untouched by the replay", sign(), values[1], ""},
		{"untouched by the spent one", sign(), values[2], ""},
	} {
		err := validate(tc.tok, tc.value)
		if got := code(err); got != tc.want || (tc.want == "" && err != nil) {
			t.Errorf("%s: %v, want code %q", tc.name, err, tc.want)
		}
	}
}
