package replicatest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/pass"
)

// TestRoundTrips holds a validation and a bearer redemption with a holder
// proof to their counted PostgreSQL round trips (issue #19 item 6), so a
// change that adds one fails here. Before #19 a validation took 9 (the
// assertion's replay lookup, BEGIN, SELECT ... FOR UPDATE, INSERT
// authorization, UPDATE mission, INSERT history, COMMIT, the replay
// record, and a second read of the mission for the answer); then 4 (the
// replay lookup, the consumption's read and write, the replay record);
// then 3, the assertion recorded first with no lookup; then 2, the record
// sent in one batch with the consumption's read (authoritypg on the dpoppg
// table of its own pool); now 1 for a pass the Authority's own store
// issued, whose row the store remembers: the record and the conditional
// write in one statement, with no read. A pass another replica's store
// issued still takes 2; a sub-agent's pass 3, its ancestors read only
// once its own row is worth consuming (a root pass's row is read by the
// pass_hash index alone, with no recursive query). A redemption at the
// Service took 3 (the proof's replay lookup, its record, Redeem); now 2,
// the record folded into Redeem's statement when the replay cache is the
// dpoppg table on the store's pool. Real handlers over loopback TLS, real
// PostgreSQL, warm caches and prepared statements.
func TestRoundTrips(t *testing.T) {
	const (
		wantValidate      = 1 // Authority: the assertion jti record and the consume write of the remembered row
		wantElsewhere     = 2 // a pass another replica issued: batch[assertion jti record; consume read], consume write
		wantSubAgent      = 3 // the batch, the read of the ancestors, the write
		wantRedeemService = 2 // Service: proof jti lookup, Redeem with the proof jti record
	)
	d := deploy(t, options{replicas: 1, postgres: true, countTrips: true})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	key, err := dpop.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	values := d.storePasses(t, 4, key)
	reqs := d.redemptions(t, key, values[2:])
	// Warm-up: discovery and JWKS caches, TLS connections, and statements
	// prepared on the pools' connections.
	if err := d.validate(ctx, values[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := d.redeem(ctx, 0, reqs[0]); err != nil {
		t.Fatal(err)
	}

	count := func(name string, c *pgtest.Trips, want int) {
		t.Helper()
		n, stmts := c.Count()
		t.Logf("%s: %d round trips, %d prepares", name, n, c.Prepares())
		for i, s := range stmts {
			t.Logf("  %d. %s", i+1, s)
		}
		if n != want {
			t.Errorf("%s: %d round trips, want %d (#19 item 6):\n%s", name, n, want, slices.Concat(stmts))
		}
	}

	d.authTrips.Reset()
	d.svcTrips.Reset()
	if err := d.validate(ctx, values[1]); err != nil {
		t.Fatal(err)
	}
	count("validation (Authority)", d.authTrips, wantValidate)
	count("validation (Service)", d.svcTrips, 0)

	// A pass issued by another replica's store: the row is read first.
	elsewhere := d.storePassesAt(t, authoritypg.New(d.authPool), 1, key)
	d.authTrips.Reset()
	if err := d.validate(ctx, elsewhere[0]); err != nil {
		t.Fatal(err)
	}
	count("validation of a pass issued elsewhere (Authority)", d.authTrips, wantElsewhere)

	d.authTrips.Reset()
	d.svcTrips.Reset()
	if _, err := d.redeem(ctx, 0, reqs[1]); err != nil {
		t.Fatal(err)
	}
	count("redemption (Authority)", d.authTrips, wantValidate)
	count("redemption (Service)", d.svcTrips, wantRedeemService)

	// A sub-agent's pass: the answer names the parent and is bounded by
	// it, from the ancestors the consumption read in one statement, with
	// no read per ancestor (there was one, and one of the mission, before).
	parentID := d.consumedMission(t, values[3])
	childPass := d.storeChild(t, key, parentID)
	d.authTrips.Reset()
	vr, err := d.validateAnswer(ctx, childPass)
	if err != nil {
		t.Fatal(err)
	}
	count("sub-agent validation (Authority)", d.authTrips, wantSubAgent)
	if vr.Mission == nil || vr.Mission.Parent != parentID || vr.Mission.Act == nil || vr.Mission.Act.Act == nil ||
		vr.Mission.Act.Act.MissionID != parentID {
		t.Errorf("sub-agent validation answer: %+v, want its parent %s in parent and act", vr.Mission, parentID)
	}

	// Every statement of both paths runs on the server's cached generic
	// plan once a connection has run it a few times, under the server's
	// default plan_cache_mode: none is planned anew per execution.
	const rounds = 8
	more := d.storePasses(t, 2*rounds, key)
	moreReqs := d.redemptions(t, key, more[rounds:])
	for i := range rounds {
		if err := d.validate(ctx, more[i]); err != nil {
			t.Fatal(err)
		}
		if _, err := d.redeem(ctx, 0, moreReqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []struct {
		name string
		pool *pgxpool.Pool
		want int
	}{{"Authority", d.authPool, wantValidate}, {"Service", d.svcPool, wantRedeemService}} {
		replanned, checked := pgtest.Replanned(t, p.pool)
		if len(replanned) > 0 {
			t.Errorf("%s: planned anew on every execution: %q", p.name, replanned)
		}
		if checked < p.want {
			t.Errorf("%s: %d statements ran often enough on one connection to be checked, want %d", p.name, checked, p.want)
		}
	}
}

// storePassesAt is storePasses through the store st, such as another
// replica's.
func (d *deployment) storePassesAt(t *testing.T, st authority.Store, n int, key *dpop.Key) []string {
	t.Helper()
	own := d.authorityStores[0]
	d.authorityStores[0] = st
	defer func() { d.authorityStores[0] = own }()
	return d.storePasses(t, n, key)
}

// TestRoundTripsNoFold (#19 item 6): with a replay cache that is not the
// dpoppg table on the store's pool (here in memory, recorded after the
// consumption), a validation of a pass the Authority's store issued is its
// conditional write alone, 1 round trip, and one of a pass another
// replica's store issued the read and the write, 2.
func TestRoundTripsNoFold(t *testing.T) {
	d := deploy(t, options{replicas: 1, postgres: true, countTrips: true, memoryAuthorityReplay: true})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	key, err := dpop.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	here := d.storePasses(t, 2, key)
	elsewhere := d.storePassesAt(t, authoritypg.New(d.authPool), 2, key)
	for _, tc := range []struct {
		name   string
		values []string
		want   []string // the round trips' first words
	}{{"issued here", here, []string{"WITH consumed"}}, {"issued elsewhere", elsewhere, []string{"SELECT id", "WITH consumed"}}} {
		if err := d.validate(ctx, tc.values[0]); err != nil { // warm-up: prepares the statements
			t.Fatal(err)
		}
		d.authTrips.Reset()
		if err := d.validate(ctx, tc.values[1]); err != nil {
			t.Fatal(err)
		}
		n, stmts := d.authTrips.Count()
		var words []string
		for _, s := range stmts {
			words = append(words, strings.TrimSuffix(strings.Join(strings.Fields(s)[:2], " "), ","))
		}
		if n != len(tc.want) || !slices.Equal(words, tc.want) {
			t.Errorf("validation of a pass %s: %d round trips %q, want %q (#19 item 6)", tc.name, n, stmts, tc.want)
		}
	}
}

// consumedMission returns the mission id of the consumed pass value.
func (d *deployment) consumedMission(t *testing.T, value string) string {
	t.Helper()
	for _, st := range d.authorityStores {
		list, err := st.Authorizations(t.Context(), authority.ListOptions{Now: d.clock.Now(), Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range list {
			if r, err := st.Request(t.Context(), a.MissionID); err == nil && r.PassHash == secret.Hash(value) {
				return r.MissionID
			}
		}
	}
	t.Fatal("no consumed mission for the pass")
	return ""
}

// storeChild stores an approved sub-agent pass under the mission parentID,
// bound to key, and returns its value.
func (d *deployment) storeChild(t *testing.T, key *dpop.Key, parentID string) string {
	t.Helper()
	now := d.clock.Now()
	value := secret.Token("ap_")
	r := &authority.Request{
		MissionID: secret.ID("msn_"), IDHash: secret.Hash(secret.ID("req_")), Status: pass.StatusApproved, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute),
		Type: pass.BearerToken, Service: appOrigin, User: user, HarnessID: harnessID, Cnf: key.PublicJSON(),
		AgentID: "sub-agent", Tier: dpop.TierUnverified, TaskID: "sub-task", ParentMissionID: parentID,
		TaskDescription: "Triage one ticket", AvailableScope: pass.Scope{"tickets:read"},
		Decision: &authority.Evidence{
			Status: pass.StatusApproved, DecidedBy: "policy:test", DecidedAt: now, Scope: pass.Scope{"tickets:read"},
			PassExpiresAt: now.Add(10 * time.Minute), AuthorizationExpiresAt: now.Add(time.Hour),
		},
		PassHash: secret.Hash(value),
	}
	if err := d.authorityStores[0].CreateRequest(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	return value
}

// validateAnswer is validate, returning the Authority's answer.
func (d *deployment) validateAnswer(ctx context.Context, value string) (*pass.ValidationResponse, error) {
	tok, err := assertion.Sign(d.serviceKeys.Current(), appOrigin, authorityID, 0, d.clock.Now())
	if err != nil {
		return nil, err
	}
	var vr pass.ValidationResponse
	_, err = httpx.Do(ctx, d.client, httpx.Call{
		URL: d.validateURL, Bearer: tok,
		Body: pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}},
	}, &vr)
	return &vr, err
}
