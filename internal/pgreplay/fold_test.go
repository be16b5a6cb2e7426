package pgreplay

import (
	"strings"
	"testing"
	"time"
)

// TestClaimCTE: the claim and the lookup keep their text, parameters
// renumbered from first, and the lookup has a row only for a free pair.
func TestClaimCTE(t *testing.T) {
	claim := ClaimCTE(SeenSQL, 33)
	if want := strings.NewReplacer("$1", "$33", "$2", "$34", "$3", "$35").Replace(SeenSQL); claim != want {
		t.Errorf("claim CTE:\n%s\nwant\n%s", claim, want)
	}
	lookup := ClaimCTE(ContainsSQL, 33)
	inner := strings.NewReplacer("$1", "$33", "$2", "$34").Replace(ContainsSQL)
	if want := `SELECT 1 WHERE NOT (` + inner + `)`; lookup != want {
		t.Errorf("lookup CTE:\n%s\nwant\n%s", lookup, want)
	}
	for _, p := range param.FindAllString(claim+lookup, -1) {
		if p < "$33" || len(p) != 3 {
			t.Errorf("parameter %s not renumbered from $33", p)
		}
	}
}

// TestOf: only a value embedding a complete Table is recognised.
func TestOf(t *testing.T) {
	type embedder struct{ *Table }
	if _, _, ok := Of(struct{}{}); ok {
		t.Error("Of(a value without a Table)")
	}
	if _, _, ok := Of(embedder{}); ok {
		t.Error("Of(a nil Table)")
	}
	e := &embedder{}
	e.Table = NewTable(e, nil, time.Now)
	if _, _, ok := Of(e); ok {
		t.Error("Of(a Table without a pool)")
	}
}
