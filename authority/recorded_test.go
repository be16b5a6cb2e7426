package authority_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// skippingStore is a RecordingStore that breaks its contract: it never
// calls record.
type skippingStore struct {
	*authority.MemoryStore
	calls int
}

func (s *skippingStore) ConsumePassRecorded(ctx context.Context, passHash, audience, authorizationID string, now time.Time,
	_ dpop.ReplayCache, _ func(dpop.ReplayCache) error,
) (*authority.Consumption, error) {
	s.calls++
	return s.ConsumePass(ctx, passHash, audience, authorizationID, now)
}

// TestValidateRecordsWhenStoreSkipsRecord (#19 item 6, G-8): the
// Authority uses a RecordingStore only with a cache that records first,
// and a store that never calls record does not leave the assertion
// unrecorded: the Authority records it after the consumption, as it does
// with the in-memory cache, and logs a replay it then finds (never the
// assertion).
func TestValidateRecordsWhenStoreSkipsRecord(t *testing.T) {
	store := &skippingStore{MemoryStore: authority.NewMemoryStore()}
	var mem *dpop.MemoryReplayCache
	e := newEnv(t, approveAll, func(c *authority.Config) {
		c.Store = store
		mem = dpop.NewMemoryReplayCache(dpop.WithClock(c.Now))
		c.ReplayCache = unboundedMemory{mem}
	})
	post := func(tok, value string) response {
		t.Helper()
		return e.do(http.MethodPost, e.base+"/validate", pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}},
			http.Header{"Authorization": {"Bearer " + tok}})
	}
	v1, _ := e.approvedPass(e.plainHarness())
	v2, _ := e.approvedPass(e.plainHarness())
	tok := e.svc.Assertion(authID)
	if r := post(tok, v1); r.status != http.StatusOK {
		t.Fatalf("validation: %d %s", r.status, r.body)
	}
	if store.calls != 1 {
		t.Fatalf("ConsumePassRecorded called %d times, want 1", store.calls)
	}
	if held, err := mem.Contains(ctx, "authority:assertion:"+e.svc.Origin, jtiOf(t, tok)); err != nil || !held {
		t.Errorf("Contains: %v, %v; want the assertion recorded after the consumption", held, err)
	}
	// The store consumed before anyone could refuse the replay: the answer
	// is the Service's, and the replay is logged.
	if r := post(tok, v2); r.status != http.StatusOK {
		t.Fatalf("second validation: %d %s", r.status, r.body)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "assertion not recorded") || strings.Contains(logs, tok) {
		t.Errorf("logs: want the failed record logged, never the assertion:\n%s", logs)
	}
}
