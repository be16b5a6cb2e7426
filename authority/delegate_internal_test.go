package authority

import (
	"testing"

	"github.com/agentpass-go/agentpass/pass"
)

// The answered scope is bounded by every ancestor's current scope, even
// when a child's own record still holds more (A2).
func TestAttenuate(t *testing.T) {
	got := attenuate(pass.Scope{"a", "b", "c"}, []*Request{{Scope: pass.Scope{"a", "b"}}, {Scope: pass.Scope{"*"}}, {Scope: pass.Scope{"b", "d"}}})
	if !got.Equal(pass.Scope{"b"}) {
		t.Errorf("attenuate = %v, want [b]", got)
	}
	if got := attenuate(pass.Scope{"a"}, nil); !got.Equal(pass.Scope{"a"}) {
		t.Errorf("attenuate without ancestors = %v", got)
	}
}
