package console

import (
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
)

func TestAgo(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		t    time.Time
		want string
	}{
		{"zero", time.Time{}, "—"},
		{"now", now, "just now"},
		{"seconds", now.Add(-42 * time.Second), "42 s ago"},
		{"minutes", now.Add(-2*time.Minute - 10*time.Second), "2 min ago"},
		{"hours", now.Add(-5 * time.Hour), "5 h ago"},
		{"days", now.Add(-72 * time.Hour), "3 days ago"},
		{"soon", now.Add(2 * time.Second), "in a moment"},
		{"future", now.Add(9*time.Minute + 30*time.Second), "in 9 min"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ago(tt.t, now); got != tt.want {
				t.Errorf("ago = %q, want %q", got, tt.want)
			}
		})
	}
}

// Nothing destructive is ticked for a person: delete, external, admin and
// unclassified scopes are destructive (G-27).
func TestDestructive(t *testing.T) {
	classified := &authority.Request{Effects: map[string]authority.Effect{
		"r": authority.EffectRead, "w": authority.EffectWrite, "d": authority.EffectDelete,
		"x": authority.EffectExternal, "a": authority.EffectAdmin, "u": authority.EffectUnknown}}
	unclassified := &authority.Request{}
	tests := []struct {
		name  string
		req   *authority.Request
		scope string
		want  bool
	}{
		{"read", classified, "r", false},
		{"write", classified, "w", false},
		{"delete", classified, "d", true},
		{"external", classified, "x", true},
		{"admin", classified, "a", true},
		{"unknown effect", classified, "u", true},
		{"missing from the Authority's classification", classified, "zzz", true},
		{"no classification, read name", unclassified, "todos:read", false},
		{"no classification, delete name", unclassified, "todos:delete", true},
		{"no classification, admin name", unclassified, "org.admin", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := destructive(tt.req, tt.scope); got != tt.want {
				t.Errorf("destructive(%q) = %v, want %v", tt.scope, got, tt.want)
			}
		})
	}
}

// The tier is said plainly: only attested and registered harnesses are
// called verified.
func TestTierLabel(t *testing.T) {
	for tier, want := range map[dpop.Tier]string{
		dpop.TierAttested: "verified: attested", dpop.TierRegistered: "verified: registered",
		dpop.TierUnverified: "unverified harness", "": "unverified harness", "bogus": "unverified harness",
	} {
		if got := tierLabel(tier); got != want || verified(tier) != strings.HasPrefix(want, "verified") {
			t.Errorf("tierLabel(%q) = %q (verified %v), want %q", tier, got, verified(tier), want)
		}
	}
}

func TestParseCursor(t *testing.T) {
	at := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	c := parseCursor("1795672800000000000_msn_abc")
	if c == nil || !c.CreatedAt.Equal(at) || c.MissionID != "msn_abc" {
		t.Errorf("parseCursor = %+v", c)
	}
	for _, bad := range []string{"", "x_msn_a", "1_other", "1", "1_msn_" + strings.Repeat("a", 200)} {
		if c := parseCursor(bad); c != nil {
			t.Errorf("parseCursor(%q) = %+v, want nil", bad, c)
		}
	}
}
