package authoritypg

import (
	"fmt"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// knownRow is an approved root pass hash whose pass expires at exp.
func knownRow(hash string, exp time.Time) *authority.Request {
	return &authority.Request{MissionID: "msn_" + hash, Status: pass.StatusApproved, PassHash: hash,
		Decision: &authority.Evidence{Status: pass.StatusApproved, PassExpiresAt: exp}}
}

// TestKnownPassesBound (#19 item 6): the map never holds more than its
// bound, a full map drops the row whose pass expires first, a row leaves
// when taken and when its pass expires, only approved unconsumed root
// passes are kept, and a zero bound keeps nothing.
func TestKnownPassesBound(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 8
	k := newKnownPasses(n)
	for i := range 3 * n {
		k.put(knownRow(fmt.Sprint("h", i), t0.Add(time.Duration(i+1)*time.Minute)), t0)
		if got := k.len(); got > n {
			t.Fatalf("after %d puts: %d rows, bound %d", i+1, got, n)
		}
	}
	if got := k.len(); got != n {
		t.Errorf("%d rows, want %d", got, n)
	}
	if r := k.take("h0", t0); r != nil {
		t.Errorf("the row expiring first survived a full map: %+v", r)
	}
	last := fmt.Sprint("h", 3*n-1)
	if r := k.take(last, t0); r == nil || r.PassHash != last {
		t.Fatalf("take(%s) = %+v", last, r)
	}
	if r := k.take(last, t0); r != nil {
		t.Errorf("a row taken twice")
	}
	// A rotation: the mission's new row replaces its old one.
	rotated := knownRow(fmt.Sprint("h", 3*n-3), t0.Add(time.Duration(3*n)*time.Minute))
	rotated.PassHash = "rotated"
	k.put(rotated, t0)
	if r := k.take(fmt.Sprint("h", 3*n-3), t0); r != nil {
		t.Errorf("the rotated-away pass's row taken: %+v", r)
	}
	if r := k.take("rotated", t0); r != rotated {
		t.Errorf("the rotated pass's row: %+v", r)
	}
	// At the expiry of h(2n), it and the rows before it are gone.
	k.take("none", t0.Add(time.Duration(2*n+1)*time.Minute))
	if got := k.len(); got != n-3 { // two taken, h(2n) expired
		t.Errorf("%d rows after two taken and one expired, want %d", got, n-3)
	}
	if r := k.take(fmt.Sprint("h", 2*n+1), t0.Add(time.Duration(2*n+2)*time.Minute)); r != nil {
		t.Errorf("a row taken at its pass's expiry: %+v", r)
	}

	for name, r := range map[string]*authority.Request{
		"pending": {Status: pass.StatusPending, PassHash: "p"},
		"no hash": knownRow("", t0.Add(time.Hour)),
		"sub-agent": func() *authority.Request {
			r := knownRow("c", t0.Add(time.Hour))
			r.ParentMissionID = "msn_p"
			return r
		}(),
		"consumed": func() *authority.Request { r := knownRow("d", t0.Add(time.Hour)); r.ConsumedAt = t0; return r }(),
	} {
		k := newKnownPasses(n)
		k.put(r, t0)
		if k.len() != 0 {
			t.Errorf("%s: kept", name)
		}
	}
	k.drop("msn_" + fmt.Sprint("h", 3*n-2))
	if r := k.take(fmt.Sprint("h", 3*n-2), t0); r != nil {
		t.Errorf("a dropped row taken: %+v", r)
	}

	var off *knownPasses = newKnownPasses(0)
	off.put(knownRow("h", t0.Add(time.Hour)), t0)
	if off != nil || off.take("h", t0) != nil || off.len() != 0 {
		t.Error("a zero bound keeps rows")
	}
}
