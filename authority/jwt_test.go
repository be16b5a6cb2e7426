package authority_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/jwtcheck"
	"github.com/agentpass-go/agentpass/pass"
)

// TestValidateAssertionOnce: the Service assertion of a validate request
// is parsed once (its unverified iss selects the Service to discover, the
// same parse is then verified), and its jti enters the replay cache only
// after the signature verified (#14 finding 1). Not parallel: it counts
// parses process-wide.
func TestValidateAssertionOnce(t *testing.T) {
	replay := &countingReplay{ReplayCache: dpop.NewMemoryReplayCache(dpop.WithLimit(100), dpop.WithClock(func() time.Time { return authoritytest.T0 }))}
	e := newEnv(t, approveAll, func(c *authority.Config) { c.ReplayCache = replay })
	value, _ := e.approvedPass(e.newHarness())
	url := e.base + "/validate"
	body := pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}}
	post := func(tok string) response {
		return e.do(http.MethodPost, url, body, http.Header{"Authorization": {"Bearer " + tok}})
	}

	// A forged assertion (right iss and kid, wrong key) is refused and
	// leaves no replay entry.
	stranger, _ := dpop.GenerateKey("ES256")
	impostor, err := dpop.NewKey(stranger.Signer(), "", e.svc.Keys.Current().KeyID())
	if err != nil {
		t.Fatal(err)
	}
	forged, err := assertion.Sign(impostor, e.svc.Origin, authID, 0, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	before := replay.calls.Load()
	wantError(t, post(forged), 401, pass.CodeInvalidAssertion)
	if n := replay.calls.Load() - before; n != 0 {
		t.Fatalf("forged assertion left %d replay entries", n)
	}

	parses := jwtcheck.Assertion.Parses()
	tok := e.svc.Assertion(authID)
	if r := post(tok); r.status != http.StatusOK {
		t.Fatalf("validate: %d %s", r.status, r.body)
	}
	if n := jwtcheck.Assertion.Parses() - parses; n != 1 {
		t.Errorf("assertion parsed %d times, want 1", n)
	}
	if n := replay.calls.Load() - before; n != 1 {
		t.Errorf("replay entries after one valid assertion = %d, want 1", n)
	}
}

// countingReplay counts the entries written to a replay cache.
type countingReplay struct {
	dpop.ReplayCache
	calls atomic.Int64
}

func (c *countingReplay) Seen(ctx context.Context, issuer, jti string, exp time.Time) (bool, error) {
	c.calls.Add(1)
	return c.ReplayCache.Seen(ctx, issuer, jti, exp)
}
