package authoritytest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
)

// testConsumeRetry: a consumption retried with the same authorization id
// (its first answer lost with the connection) returns the authorization it
// created, even after the pass's expiry, while any other id is refused; a
// retry for the wrong audience learns nothing.
func testConsumeRetry(t *testing.T, s authority.Store) {
	approvedRequest(t, s, "r1", "h1")
	now := T0.Add(time.Minute)
	first, err := s.ConsumePass(ctx, "h1", svcA, "authz-1", now)
	if err != nil {
		t.Fatalf("ConsumePass: %v", err)
	}
	for _, at := range []time.Time{now, now.Add(time.Second), T0.Add(6 * time.Minute)} {
		again, err := s.ConsumePass(ctx, "h1", svcA, "authz-1", at)
		if err != nil {
			t.Fatalf("retry at %v: %v, want the authorization", at.Sub(T0), err)
		}
		if d := cmp.Diff(first, again, cmpOpts...); d != "" {
			t.Errorf("retry at %v (-first +retry):\n%s", at.Sub(T0), d)
		}
	}
	_, err = s.ConsumePass(ctx, "h1", svcA, "authz-2", now)
	wantErr(t, "another id after consume", err, authority.ErrConsumed)
	_, err = s.ConsumePass(ctx, "h1", svcB, "authz-1", now)
	wantErr(t, "retry for another audience", err, authority.ErrWrongAudience)
	list, err := s.Authorizations(ctx, authority.ListOptions{Now: now})
	if err != nil || len(list) != 1 {
		t.Errorf("authorizations after retries: %d, %v; want 1", len(list), err)
	}
}
