package service

import (
	"strconv"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// Review finding 3 (§9 fix 7; mission.md §5.4): an Authority's identifier
// is whatever its configuration says, so redemptions through other
// configurations claiming the same identifier replaced the recorded
// configuration URL each time: SETs of the honest Authority were then
// verified with the other one's keys, and RunEventPoller started one more
// long poll, never stopped, per URL (unbounded goroutines and connections
// driven by whoever can get a pass redeemed). The first configuration
// recorded for an identifier stays, the configured ones always.
func TestReviewKnownAuthorityNotReplaced(t *testing.T) {
	const honest, honestURL = "https://idp.example.com", "https://idp.example.com/ap"
	ev := newEvents(&settings{Config: Config{ServiceAuthority: &pass.AuthorityRef{Authority: honest, AuthorityConfigurationURL: honestURL}}})
	const learned, learnedURL = "https://other.example.org", "https://other.example.org/ap"
	ev.remember(learned, learnedURL)
	for i := range 2 * maxKnownAuthorities {
		u := "https://evil" + strconv.Itoa(i) + ".example.net/ap"
		ev.remember(honest, u)
		ev.remember(learned, u)
	}
	if u, _ := ev.configURL(honest); u != honestURL {
		t.Errorf("configured Authority now at %s, want %s", u, honestURL)
	}
	if u, _ := ev.configURL(learned); u != learnedURL {
		t.Errorf("learned Authority now at %s, want %s", u, learnedURL)
	}
	if known, _ := ev.snapshot(); len(known) != 2 {
		t.Errorf("%d Authorities to poll, want 2", len(known))
	}
}

// Review finding 3, second part: a SET buffered for a delegation not held
// yet is applied at its redemption only when that delegation's Authority
// is the one (identifier and configuration) that verified the SET.
func TestReviewBufferedSETMatchesConfiguration(t *testing.T) {
	now := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	ev := newEvents(&settings{})
	e := MissionEvent{Authority: "https://idp.example.com", AuthorizationID: "authz-1", Action: EventRevoke}
	if !ev.hold(e, "https://evil.example.net/ap", now) {
		t.Fatal("hold refused")
	}
	if got := ev.take(e.Authority, "https://idp.example.com/ap", e.AuthorizationID, now); len(got) != 0 {
		t.Errorf("a SET verified with another configuration's keys was applied: %+v", got)
	}
	if !ev.hold(e, "https://idp.example.com/ap", now) {
		t.Fatal("hold refused")
	}
	if got := ev.take(e.Authority, "https://idp.example.com/ap", e.AuthorizationID, now); len(got) != 1 {
		t.Errorf("the SET of the delegation's own configuration: %d taken, want 1", len(got))
	}
}
