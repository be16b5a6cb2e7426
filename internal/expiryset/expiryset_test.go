package expiryset

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestAdd(t *testing.T) {
	s := New()
	o := KeyOf("iss")
	a, b := KeyOf("iss", "j1"), KeyOf("iss", "j2")
	if KeyOf("a", "bc") == KeyOf("ab", "c") {
		t.Fatal("length prefix missing")
	}
	lim := func(max int) Limits { return Limits{Max: max, PerOwner: max} }
	steps := []struct {
		k    Key
		exp  time.Time
		now  time.Time
		lim  Limits
		want Outcome
	}{
		{a, t0.Add(time.Minute), t0, lim(10), Added},
		{a, t0.Add(time.Minute), t0.Add(time.Second), lim(10), Present},
		{b, t0, t0, lim(10), Expired},
		{b, t0.Add(time.Minute), t0, lim(1), Full},
		{a, t0.Add(2 * time.Minute), t0.Add(time.Minute), lim(1), Added}, // a expired at exactly its exp, so reusable
	}
	for i, st := range steps {
		if got := s.Add(st.k, o, st.exp, st.now, st.lim); got != st.want {
			t.Fatalf("step %d: Add = %d, want %d", i, got, st.want)
		}
	}
	if s.Len() != 1 || s.OwnerLen(o) != 1 {
		t.Fatalf("Len = %d, OwnerLen = %d after eviction; want 1, 1", s.Len(), s.OwnerLen(o))
	}
	if !s.Contains(a, t0.Add(time.Minute)) || s.Contains(a, t0.Add(2*time.Minute)) || s.Contains(b, t0) {
		t.Error("Contains disagrees with the expiry of the held keys")
	}
}

// An owner past its quota is refused only once the reserve is reached;
// others keep the reserve; expired keys are evicted before any refusal and
// their owners' counts drop with them.
func TestQuota(t *testing.T) {
	s := New()
	lim := Limits{Max: 10, PerOwner: 2, Reserve: 4}
	a, b := KeyOf("a"), KeyOf("b")
	add := func(owner Key, name string, i int, exp time.Time, now time.Time) Outcome {
		return s.Add(KeyOf(name, fmt.Sprint(i)), owner, exp, now, lim)
	}
	// A lone owner may use Max - Reserve places.
	for i := range 6 {
		if got := add(a, "a", i, t0.Add(time.Duration(i+1)*time.Second), t0); got != Added {
			t.Fatalf("a's key %d: %d, want Added", i, got)
		}
	}
	if got := add(a, "a", 6, t0.Add(time.Hour), t0); got != OverQuota {
		t.Fatalf("a past Max-Reserve: %d, want OverQuota", got)
	}
	// b, under its quota, still gets in; past its quota, it is refused too.
	for i := range 2 {
		if got := add(b, "b", i, t0.Add(time.Hour), t0); got != Added {
			t.Fatalf("b's key %d: %d, want Added", i, got)
		}
	}
	if got := add(b, "b", 2, t0.Add(time.Hour), t0); got != OverQuota {
		t.Fatalf("b past its quota under pressure: %d, want OverQuota", got)
	}
	// Two more owners fill the set: then everyone is refused.
	for _, o := range []string{"c", "d"} {
		if got := add(KeyOf(o), o, 0, t0.Add(time.Hour), t0); got != Added {
			t.Fatalf("%s: %d, want Added", o, got)
		}
	}
	if got := add(KeyOf("e"), "e", 0, t0.Add(time.Hour), t0); got != Full {
		t.Fatalf("full set: %d, want Full", got)
	}
	// Three of a's keys expire: they go first, and a's count drops.
	now := t0.Add(3 * time.Second)
	if got := add(KeyOf("e"), "e", 0, t0.Add(time.Hour), now); got != Added {
		t.Fatalf("after expiry: %d, want Added", got)
	}
	if s.OwnerLen(a) != 3 || s.Len() != 8 {
		t.Fatalf("after eviction: OwnerLen(a) = %d, Len = %d; want 3, 8", s.OwnerLen(a), s.Len())
	}
	for i := 3; i < 6; i++ {
		if !s.Contains(KeyOf("a", fmt.Sprint(i)), now) {
			t.Errorf("unexpired key a/%d was evicted", i)
		}
	}
	// Every key expired: the owner table empties too.
	s.Add(KeyOf("z"), KeyOf("z"), t0.Add(2*time.Hour), t0.Add(time.Hour), lim)
	if s.Len() != 1 || len(s.owners) != 1 {
		t.Fatalf("after expiry of all: Len = %d, owners = %d; want 1, 1", s.Len(), len(s.owners))
	}
}

// TestFarExpiry (review Low 5): an expiry past 2262, where UnixNano is
// undefined, is recorded (clamped), so the key is a replay the second time
// instead of "expired" and unrecorded each time.
func TestFarExpiry(t *testing.T) {
	s := New()
	o, k := KeyOf("iss"), KeyOf("iss", "far")
	lim := Limits{Max: 10, PerOwner: 10}
	for _, exp := range []time.Time{time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if got := s.Add(k, o, exp, t0, lim); got != Added && got != Present {
			t.Fatalf("exp %v: first Add = %d, want Added", exp, got)
		}
		if got := s.Add(k, o, exp, t0.Add(time.Hour), lim); got != Present {
			t.Fatalf("exp %v: second Add = %d, want Present", exp, got)
		}
		if !s.Contains(k, t0) {
			t.Fatalf("exp %v: Contains = false", exp)
		}
	}
	// A clock before 1677 does not wrap either.
	if got := s.Add(KeyOf("iss", "old"), o, t0, time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC), lim); got != Added {
		t.Fatalf("clock before 1677: Add = %d, want Added", got)
	}
}

// keyOfStream is the streaming form KeyOf replaced: the same bytes.
func keyOfStream(parts ...string) Key {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	var k Key
	copy(k[:], h.Sum(nil))
	return k
}

// TestKeyOfSameAsStream: the one-shot hash gives the keys the streaming
// one gave, across the stack buffer's edge, and short parts allocate
// nothing (a replay record computes two keys).
func TestKeyOfSameAsStream(t *testing.T) {
	for _, parts := range [][]string{
		nil, {""}, {"", ""}, {"a", "bc"}, {"ab", "c"},
		{"https://svc.example.com", "Qh2kZ-_xJ1"},
		{strings.Repeat("i", 232)}, {strings.Repeat("i", 240), strings.Repeat("j", 8)},
		{strings.Repeat("i", 1000), "jti"},
	} {
		if got, want := KeyOf(parts...), keyOfStream(parts...); got != want {
			t.Errorf("KeyOf(%d parts of %d bytes) = %x, want %x", len(parts), len(strings.Join(parts, "")), got, want)
		}
	}
	if KeyOf("a", "bc") == KeyOf("ab", "c") {
		t.Error("length prefixes lost")
	}
	iss, jti := "assertion:https://svc.example.com", "Qh2kZ-_xJ1kR8m3T"
	if n := testing.AllocsPerRun(100, func() { _, _ = KeyOf(iss, jti), KeyOf(iss) }); n != 0 {
		t.Errorf("KeyOf: %v allocations, want 0", n)
	}
}

func FuzzKeyOf(f *testing.F) {
	f.Add("a", "bc", 1)
	f.Fuzz(func(t *testing.T, a, b string, n int) {
		parts := []string{a, b, strings.Repeat(a, n&7)}
		if KeyOf(parts...) != keyOfStream(parts...) {
			t.Fatalf("KeyOf(%q) differs from the stream", parts)
		}
	})
}
