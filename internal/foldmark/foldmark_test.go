package foldmark_test

import (
	"testing"

	"github.com/agentpass-go/agentpass/internal/foldmark"
)

type mark = foldmark.Mark

type store struct{ mark }

func newStore() *store {
	s := &store{}
	s.mark.Set(s)
	return s
}

// A wrapper that overrides a method of the store it embeds.
type wrapper struct {
	*store
	_ []string // not comparable: Own must still not panic
}

type valueWrapper struct{ *store }

// TestOwn (#19 item 6, review H1): only the marked value itself is its own;
// a wrapper embedding it, by pointer or in a non-comparable struct, is not.
func TestOwn(t *testing.T) {
	s := newStore()
	if !foldmark.Own(s) {
		t.Fatal("Own(store) = false")
	}
	for name, v := range map[string]any{
		"wrapper":           &wrapper{store: s},
		"wrapper by value":  wrapper{store: s},
		"comparable value":  valueWrapper{s},
		"unset mark":        &store{},
		"another store":     struct{ *store }{newStore()},
		"nil":               nil,
		"not marked at all": 42,
	} {
		if foldmark.Own(v) {
			t.Errorf("Own(%s) = true", name)
		}
	}
	// Wraps: a value embedding a marked one, not the marked value itself
	// nor a value with no mark (another module's implementation).
	for name, want := range map[string]bool{
		"store":                  false,
		"wrapper":                true,
		"comparable wrapper":     true,
		"wrapper of a nil store": true,
		"not marked at all":      false,
		"nil":                    false,
	} {
		v := map[string]any{
			"store": s, "wrapper": &wrapper{store: s}, "comparable wrapper": valueWrapper{s},
			"wrapper of a nil store": valueWrapper{}, "not marked at all": 42, "nil": nil,
		}[name]
		if got := foldmark.Wraps(v); got != want {
			t.Errorf("Wraps(%s) = %v, want %v", name, got, want)
		}
	}
}
