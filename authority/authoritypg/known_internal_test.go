package authoritypg

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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

// TestKnownPassesBytes (#19 item 6; found in review): the map is bounded
// in bytes, not only in entries. A Service chooses its scope names and a
// Harness its task description, so auto-approved issuance could otherwise
// fill the default 4,096 entries with rows of hundreds of KiB each (the
// review measured 845 MiB): a row over maxKnownRow is not remembered, and
// large rows evict older ones once the byte budget is spent.
func TestKnownPassesBytes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	huge := func(hash string, scopes, desc int) *authority.Request {
		r := knownRow(hash, t0.Add(time.Hour))
		for i := range scopes {
			r.AvailableScope = append(r.AvailableScope, fmt.Sprintf("%0250d", i))
		}
		r.Scope, r.Decision.Scope = r.AvailableScope, r.AvailableScope
		r.TaskDescription = strings.Repeat("x", desc)
		return r
	}
	k := newKnownPasses(defaultKnownPasses)
	for i := range 64 {
		k.put(huge(fmt.Sprint("big", i), 256, 4096), t0)
	}
	if k.len() != 0 || k.bytes != 0 {
		t.Errorf("rows of ~200 KiB remembered: %d rows, %d bytes", k.len(), k.bytes)
	}
	// Rows just under the per-row limit: the byte budget, not the entry
	// bound, limits them.
	var size int
	for i := range defaultKnownPasses {
		r := huge(fmt.Sprint("mid", i), 5, 1024)
		size = rowSize(r)
		k.put(r, t0)
	}
	if size <= knownBytesPerEntry || size > maxKnownRow {
		t.Fatalf("test rows of %d bytes: want between %d and %d", size, knownBytesPerEntry, maxKnownRow)
	}
	if k.bytes > k.maxBytes || k.len() >= defaultKnownPasses || k.len() < k.maxBytes/size-1 {
		t.Errorf("%d rows of %d bytes, %d bytes held: want at most %d bytes and the budget used", k.len(), size, k.bytes, k.maxBytes)
	}
	for k.len() > 0 { // bytes follow the entries out
		k.removeLocked(k.byExp[0])
	}
	if k.bytes != 0 {
		t.Errorf("%d bytes counted with no rows", k.bytes)
	}
}

// TestRequestWritesBumpHistory (#19 item 6; found in review): a
// remembered row is safe only because the consumption's write applies
// when the row's pass_hash, version and history_count are still as
// remembered, and every write to a mission adds a history record. This
// census of the package's statements fails when an UPDATE of the requests
// table sets neither history_count nor pass_hash alone (RotatePass, whose
// new hash the write checks): such a write would change a row a
// remembered copy still passes for.
func TestRequestWritesBumpHistory(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	update := regexp.MustCompile(`(?is)UPDATE\s+agentpass_authority_requests\s+SET\s+(.*?)\s+WHERE`)
	found := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range update.FindAllSubmatch(src, -1) {
			found++
			set := strings.Join(strings.Fields(string(m[1])), " ")
			if !strings.Contains(set, "history_count =") && set != "pass_hash = $2" {
				t.Errorf("%s: UPDATE of the requests table without a history record: SET %s", f, set)
			}
		}
	}
	if found < 3 { // writeMission, RotatePass, the consumption
		t.Errorf("found %d UPDATEs of the requests table, want at least 3: the census no longer sees them", found)
	}
}
