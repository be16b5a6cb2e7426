package service

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/pass"
)

// Credentials are keyed by the raw SHA-256 when the hash is in
// secret.Hash's form, and by the string otherwise; two hashes share a key
// only when they are equal.
func TestCredKeyInjective(t *testing.T) {
	h := secret.Hash("tok")
	hashes := []string{"", "h-1", "h-2", h, strings.ToUpper(h), h[:63], h + "0",
		strings.Repeat("0", 64), "\x01" + h[:32], strings.Repeat("g", 64)}
	keys := map[string]string{}
	for _, hash := range hashes {
		k := credKey(hash)
		if prev, ok := keys[k]; ok {
			t.Errorf("credKey(%q) = credKey(%q)", hash, prev)
		}
		keys[k] = hash
		if k != credKey(hash) {
			t.Errorf("credKey(%q) is not stable", hash)
		}
	}
	sum := secret.Sum("tok")
	if k := credKey(h); len(k) != 33 || k[0] != 1 || k[1:] != string(sum[:]) {
		t.Errorf("credKey(secret.Hash) = %x, want 01 and the SHA-256", k)
	}
}

// The middleware's lookup by SHA-256 and Credential's by hex hash find
// the same credential, and neither finds one stored under another form.
func TestCredentialSnapshotBySum(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	s := NewMemoryStore()
	tok := prefixToken + "abc"
	d := &DelegationRecord{AuthorizationID: "a1", CurrentScope: pass.Scope{"r"}}
	c := &CredentialRecord{Hash: secret.Hash(tok), Kind: KindBearer, Scope: pass.Scope{"r"}, ExpiresAt: now.Add(time.Hour)}
	if err := s.Redeem(ctx, d, c, nil); err != nil {
		t.Fatal(err)
	}
	sum := secret.Sum(tok)
	mc, rec, err := s.credentialSnapshot(ctx, &sum, now)
	if err != nil || mc.rec.Hash != c.Hash || rec.AuthorizationID != "a1" {
		t.Fatalf("credentialSnapshot = %v, %v, %v", mc, rec, err)
	}
	if _, _, err := s.Credential(ctx, c.Hash, now); err != nil {
		t.Errorf("Credential(hex) = %v", err)
	}
	if _, _, err := s.Credential(ctx, strings.ToUpper(c.Hash), now); err == nil {
		t.Error("Credential(upper-case hex) found the credential")
	}
	if _, _, err := s.credentialSnapshot(ctx, &sum, now.Add(time.Hour)); err == nil {
		t.Error("an expired credential was found")
	}
}

// Requests share a credential's Delegation while the delegation's
// snapshot stays the same; a new snapshot (a narrowing) or another
// Service gets its own, and the one already handed out never changes.
func TestMemCredDelegationView(t *testing.T) {
	s1, s2 := new(Service), new(Service)
	rec := &DelegationRecord{AuthorizationID: "a1", Scope: pass.Scope{"r", "w"}, CurrentScope: pass.Scope{"r", "w"},
		Task: pass.Task{ID: "t1"}}
	c := &memCred{rec: &CredentialRecord{Kind: KindBearer, Scope: pass.Scope{"r", "w"}}}
	d1 := c.delegation(s1, rec)
	if d2 := c.delegation(s1, rec); d2 != d1 {
		t.Error("a second request of the same snapshot built another Delegation")
	}
	if d := c.delegation(s2, rec); d == d1 {
		t.Error("another Service shares the first one's Delegation")
	}
	narrowed := *rec
	narrowed.CurrentScope = pass.Scope{"r"}
	d3 := c.delegation(s1, &narrowed)
	if d3 == d1 || !slices.Equal(d3.Scope, pass.Scope{"r"}) {
		t.Errorf("after a narrowing: shared %v, scope %v", d3 == d1, d3.Scope)
	}
	if !slices.Equal(d1.Scope, pass.Scope{"r", "w"}) || d1.Task == nil || d1.Task.ID != "t1" || d1.Task == &rec.Task {
		t.Errorf("the Delegation handed out before changed or points into the record: %+v", d1)
	}
	if n := testing.AllocsPerRun(100, func() { c.delegation(s1, &narrowed) }); n != 0 {
		t.Errorf("a shared Delegation costs %v allocations", n)
	}
}

// recentSlot is the index of a SHA-256 in MemoryStore.recent.
func recentSlot(sum [32]byte) int { return (int(sum[0])<<8 | int(sum[1])) & (recentSlots - 1) }

// The lock-free lookup serves only what the store holds: two tokens of
// one slot each find their own credential, and a credential the store
// dropped (a full store prunes those of invalidated delegations) is not
// found through its slot any more.
func TestCredentialSnapshotRecent(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	s := NewMemoryStore(WithLimit(2))
	tok1 := prefixToken + "one"
	sum1 := secret.Sum(tok1)
	var tok2 string
	for i := 0; ; i++ {
		tok2 = prefixToken + "two" + strconv.Itoa(i)
		if recentSlot(secret.Sum(tok2)) == recentSlot(sum1) {
			break
		}
	}
	sum2 := secret.Sum(tok2)
	for i, tok := range []string{tok1, tok2} {
		d := &DelegationRecord{AuthorizationID: "a" + strconv.Itoa(i), CurrentScope: pass.Scope{"r"}}
		c := &CredentialRecord{Hash: secret.Hash(tok), Kind: KindBearer, Scope: pass.Scope{"r"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := s.Redeem(ctx, d, c, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		for i, sum := range []*[32]byte{&sum1, &sum2} {
			if _, rec, err := s.credentialSnapshot(ctx, sum, now); err != nil || rec.AuthorizationID != "a"+strconv.Itoa(i) {
				t.Fatalf("token %d: %v, %v", i, rec, err)
			}
		}
	}
	if err := s.Invalidate(ctx, "a0", now, "test"); err != nil {
		t.Fatal(err)
	}
	if _, rec, err := s.credentialSnapshot(ctx, &sum1, now); err != nil || !rec.Invalidated {
		t.Fatalf("after Invalidate: %v, %v, want the invalidated snapshot", rec, err)
	}
	d := &DelegationRecord{AuthorizationID: "a2", CreatedAt: now}
	c := &CredentialRecord{Hash: secret.Hash("three"), Kind: KindBearer, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.Redeem(ctx, d, c, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.credentialSnapshot(ctx, &sum1, now); err != ErrNotFound {
		t.Errorf("a pruned credential: %v, want ErrNotFound", err)
	}
}
