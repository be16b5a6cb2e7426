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
	if ev.hold(e, "https://idp.example.com/ap", now) {
		t.Fatal("a SET of an Authority not in the table was held (review 8, L3: nothing would drop it)")
	}
	ev.remember(e.Authority, "https://idp.example.com/ap")
	if ev.hold(e, "https://evil.example.net/ap", now) {
		t.Fatal("a SET verified with another configuration's keys was held")
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

// Review finding 6 (§9 fix 7, bounds): the table of Authorities was capped
// and never evicted, so whoever got passes of maxKnownAuthorities
// Authorities redeemed locked every later Authority out of polling and of
// the early-SET buffer for the life of the process. Now the learned
// Authority least recently used by a redemption or check makes room
// (configured ones stay), and its poller stops.
func TestReviewKnownAuthoritiesEvictLeastUsed(t *testing.T) {
	const configured, configuredURL = "https://idp.example.com", "https://idp.example.com/ap"
	ev := newEvents(&settings{Config: Config{ServiceAuthority: &pass.AuthorityRef{Authority: configured, AuthorityConfigurationURL: configuredURL}}})
	const inUse, inUseURL = "https://in-use.example.org", "https://in-use.example.org/ap"
	ev.remember(inUse, inUseURL)
	flood := func(i int) (string, string) {
		id := "https://a" + strconv.Itoa(i) + ".example.net"
		return id, id + "/ap"
	}
	for i := 0; len(ev.known) < maxKnownAuthorities; i++ {
		ev.remember(flood(i))
	}
	ev.remember(inUse, inUseURL) // a check of one of its delegations
	first, firstURL := flood(0)
	gone, ok := ev.watch(first, firstURL)
	if !ok {
		t.Fatal("the first flooding Authority is not in the table")
	}
	// An early SET of the Authority about to be evicted waits in the
	// buffer; it must leave with its Authority (audit 7, M5), or the
	// buffer would grow a share per Authority that ever passed through.
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	if !ev.hold(MissionEvent{Authority: first, AuthorizationID: "az-early"}, firstURL, now) {
		t.Fatal("hold refused an early SET")
	}
	const later, laterURL = "https://later.example.org", "https://later.example.org/ap"
	ev.remember(later, laterURL)
	if _, ok := ev.configURL(later); !ok {
		t.Fatal("a full table still refuses a new Authority")
	}
	for _, id := range []string{configured, inUse} {
		if _, ok := ev.configURL(id); !ok {
			t.Errorf("%s was evicted", id)
		}
	}
	if _, ok := ev.configURL(first); ok {
		t.Error("the least recently used Authority stayed")
	}
	if n := len(ev.buffer[first]); n != 0 {
		t.Errorf("%d early SETs of the evicted Authority still buffered", n)
	}
	select {
	case <-gone:
	default:
		t.Error("the evicted Authority's poller was not told to stop")
	}
	if n := len(ev.known); n != maxKnownAuthorities {
		t.Errorf("%d Authorities known, want the cap %d", n, maxKnownAuthorities)
	}
	// A poller of an Authority no longer in the table returns at once,
	// touching nothing (this Service has no configuration to use).
	s := &Service{events: ev}
	s.pollAuthority(t.Context(), first, firstURL)
}

// Review 9, Low 3: a learned Authority evicted while its SET was being
// verified gets the SET refused by hold, and bufferSET tells that refusal
// (the Authority no longer watched at that configuration) from a full
// share, answering it 503 so the SET comes again, by which time the
// redemption it may overtake has put the Authority back.
func TestReviewHoldAfterEvictionIsRetried(t *testing.T) {
	now := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	ev := newEvents(&settings{})
	const x, u = "https://x.example", "https://x.example/ap"
	ev.remember(x, u)
	cfg, ok := ev.configURL(x) // bufferSET's lookup
	if !ok {
		t.Fatal("not known")
	}
	for i := range maxKnownAuthorities { // churn while the SET is verified
		ev.remember("https://a"+strconv.Itoa(i)+".example", "https://a"+strconv.Itoa(i)+".example/ap")
	}
	e := MissionEvent{Authority: x, AuthorizationID: "authz-1", Action: EventRevoke}
	if ev.hold(e, cfg, now) {
		t.Fatal("held a SET of an Authority no longer in the table")
	}
	if _, watched := ev.watch(x, cfg); watched {
		t.Fatal("the evicted Authority is still watched: bufferSET would answer 202 and lose the SET")
	}
	ev.remember(x, u) // the redemption commits
	if !ev.hold(e, cfg, now) {
		t.Fatal("the SET sent again was refused")
	}
	if got := ev.take(x, u, "authz-1", now); len(got) != 1 {
		t.Errorf("applied at redemption: %d, want the revocation", len(got))
	}
}
