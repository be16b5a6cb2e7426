package approvalpage

import (
	"strings"
	"testing"
	"time"
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

func TestCleanName(t *testing.T) {
	long := strings.Repeat("é", 70)
	for in, want := range map[string]string{
		"  Robin  ": "Robin",
		"a\x00b\nc": "abc",
		"":          "",
		long:        strings.Repeat("é", 64),
	} {
		if got := cleanName(in); got != want {
			t.Errorf("cleanName(%q) = %q, want %q", in, got, want)
		}
	}
}
