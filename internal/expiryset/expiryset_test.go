package expiryset

import (
	"testing"
	"time"
)

func TestAdd(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New()
	a, b := KeyOf("iss", "j1"), KeyOf("iss", "j2")
	if KeyOf("a", "bc") == KeyOf("ab", "c") {
		t.Fatal("length prefix missing")
	}
	steps := []struct {
		k    Key
		exp  time.Time
		now  time.Time
		max  int
		want Outcome
	}{
		{a, t0.Add(time.Minute), t0, 10, Added},
		{a, t0.Add(time.Minute), t0.Add(time.Second), 10, Present},
		{b, t0, t0, 10, Expired},
		{b, t0.Add(time.Minute), t0, 1, Full},
		{a, t0.Add(2 * time.Minute), t0.Add(time.Minute), 1, Added}, // a expired at exactly its exp, so reusable
	}
	for i, st := range steps {
		if got := s.Add(st.k, st.exp, st.now, st.max); got != st.want {
			t.Fatalf("step %d: Add = %d, want %d", i, got, st.want)
		}
	}
	if s.Len() != 1 {
		t.Fatalf("Len = %d after eviction", s.Len())
	}
}
