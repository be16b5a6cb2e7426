package authoritypg_test

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/dpop/dpoppg"
	"github.com/agentpass-go/agentpass/internal/missionlog"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/pass"
)

// child stores an approved child of the mission parentID with pass hash.
func child(t testing.TB, s authority.Store, id, hash, parentID string) *authority.Request {
	t.Helper()
	r := authoritytest.NewRequest(id)
	r.Status = pass.StatusApproved
	e := authoritytest.Approval("tickets:read")
	e.PassExpiresAt = t0.Add(time.Hour)
	e.AuthorizationExpiresAt = t0.Add(2 * time.Hour)
	r.Decision = &e
	r.PassHash = hash
	r.ParentMissionID = parentID
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatalf("CreateRequest: %v", err)
	}
	return r
}

// TestConsumeRoundTrips holds ConsumePass to its round trips (#19 item 6):
// one for a root pass this store issued (its conditional write alone, on
// the row as the store wrote it), two for a root pass issued elsewhere
// (the read of its row, then the conditional write), three for a
// sub-agent's (the read of its ancestors in between, in one statement
// whatever their number), one for a refusal, and nothing in a transaction
// that waits for the network.
func TestConsumeRoundTrips(t *testing.T) {
	base := pgtest.Pool(t)
	seed := authoritypg.New(base) // another replica's store
	if err := seed.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	pool, trips := pgtest.CountedPool(t, base)
	s := authoritypg.New(pool)
	for i, h := range []string{"hw", "hv"} { // a known row, then a read
		approved(t, []authority.Store{s, seed}[i], h, h)
		if _, err := s.ConsumePass(ctx, h, svcA, "z"+h, t0); err != nil { // prepares the statements
			t.Fatal(err)
		}
	}
	parent := approved(t, seed, "root", "h1")
	child(t, s, "kid", "h2", parent.MissionID)
	approved(t, s, "here", "h3")
	for _, tc := range []struct {
		name, hash, id string
		wantErr        error
		want           int
	}{
		{"root issued here", "h3", "z6", nil, 1},
		{"root", "h1", "z1", nil, 2},
		{"sub-agent", "h2", "z2", nil, 3},
		{"consumed", "h1", "z3", authority.ErrConsumed, 1},
		{"sub-agent consumed", "h2", "z5", authority.ErrConsumed, 1},
		{"unknown", "nope", "z4", authority.ErrNotFound, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trips.Reset()
			_, err := s.ConsumePass(ctx, tc.hash, svcA, tc.id, t0)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ConsumePass: %v, want %v", err, tc.wantErr)
			}
			if n, stmts := trips.Count(); n != tc.want {
				t.Errorf("%d round trips, want %d (#19 item 6): %q", n, tc.want, stmts)
			}
		})
	}
}

// TestConsumeRacesAncestorEnd races, round after round, the consumption
// of a sub-agent's pass at one replica against the suspension or
// revocation of its parent at another. Whichever commits first, the
// outcome is one of the two serial ones: the consumption refused
// (ErrNotFound), or the consumption's "redeemed" entry before the
// cascade's in the child's history and, for a revocation, its
// authorization revoked by the cascade; the child's history chain intact.
// Never a deadlock or another error.
func TestConsumeRacesAncestorEnd(t *testing.T) {
	s1, s2 := twoReplicas(t)
	live := []pass.DelegationState{pass.DelegationActive, pass.DelegationSuspended}
	won := map[bool]int{}
	for i := range 30 {
		to := pass.DelegationSuspended
		if i%2 == 1 {
			to = pass.DelegationRevoked
		}
		pid, cid := fmt.Sprintf("p%d", i), fmt.Sprintf("c%d", i)
		approved(t, s1, pid, "hp"+pid)
		if _, err := s1.ConsumePass(ctx, "hp"+pid, svcA, "z"+pid, t0); err != nil {
			t.Fatal(err)
		}
		kid := child(t, s1, cid, "hc"+cid, "msn_"+pid)
		var (
			wg                sync.WaitGroup
			consumeErr, trErr error
		)
		start := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			_, consumeErr = s1.ConsumePass(ctx, "hc"+cid, svcA, "z"+cid, t0.Add(time.Second))
		}()
		go func() {
			defer wg.Done()
			<-start
			_, trErr = authoritytest.UpdateAuthorization(s2, "z"+pid, authoritytest.AuthUpdate{From: live, To: to, By: "op"}, t0.Add(time.Second))
		}()
		close(start)
		wg.Wait()
		if trErr != nil {
			t.Fatalf("round %d: %s the parent: %v", i, to, trErr)
		}
		hist, err := s2.History(ctx, kid.MissionID)
		if err != nil {
			t.Fatal(err)
		}
		bodies, hashes := make([][]byte, len(hist)), make([]string, len(hist))
		for j, h := range hist {
			bodies[j], hashes[j] = h.Body, h.Hash
		}
		if seq, err := missionlog.Verify(bodies, hashes); err != nil {
			t.Errorf("round %d: the child's history chain breaks at seq %d: %v", i, seq, err)
		}
		redeemed, cascade := -1, -1
		for j, h := range hist {
			switch {
			case bytes.Contains(h.Body, []byte(`"type":"redeemed"`)):
				redeemed = j
			case bytes.Contains(h.Body, []byte(`"ancestor":"msn_`+pid+`"`)):
				cascade = j
			}
		}
		switch {
		case errors.Is(consumeErr, authority.ErrNotFound):
			if redeemed >= 0 {
				t.Errorf("round %d: consumption refused, yet the child's history has it", i)
			}
			if _, err := s2.Authorization(ctx, "z"+cid); !errors.Is(err, authority.ErrNotFound) {
				t.Errorf("round %d: consumption refused, yet its authorization exists (%v)", i, err)
			}
		case consumeErr != nil:
			t.Fatalf("round %d: ConsumePass racing a %s of the parent: %v", i, to, consumeErr)
		default:
			if redeemed < 0 || cascade < 0 || redeemed > cascade {
				t.Errorf("round %d: consumed while the parent was %s: redeemed at %d, cascade at %d", i, to, redeemed, cascade)
			}
			a, err := s2.Authorization(ctx, "z"+cid)
			if err != nil || to == pass.DelegationRevoked && a.State != pass.DelegationRevoked {
				t.Errorf("round %d: the cascade missed the consumption's authorization: %+v, %v", i, a, err)
			}
		}
		won[consumeErr == nil]++
	}
	t.Logf("consumption won %d rounds, lost %d", won[true], won[false])
}

// TestConsumeGivesUp: a write whose row changed since its read is retried
// a bounded number of times, then ConsumePass fails closed (an error that
// is no store sentinel, nothing stored). A trigger that skips every
// consumption stands in for a mission that keeps changing.
func TestConsumeGivesUp(t *testing.T) {
	base := pgtest.Pool(t)
	if err := authoritypg.New(base).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := base.Exec(ctx, `
		CREATE FUNCTION skip_consumption() RETURNS trigger AS $$
		BEGIN
			IF NEW.consumed_at IS NOT NULL THEN RETURN NULL; END IF;
			RETURN NEW;
		END $$ LANGUAGE plpgsql;
		CREATE TRIGGER skip_consumption BEFORE UPDATE ON agentpass_authority_requests
			FOR EACH ROW EXECUTE FUNCTION skip_consumption();`); err != nil {
		t.Fatal(err)
	}
	pool, trips := pgtest.CountedPool(t, base)
	s := authoritypg.New(pool)
	approved(t, s, "r1", "h1")
	trips.Reset()
	_, err := s.ConsumePass(ctx, "h1", svcA, "z1", t0)
	if err == nil || errors.Is(err, authority.ErrConsumed) || errors.Is(err, authority.ErrNotFound) {
		t.Fatalf("ConsumePass on a row that keeps changing: %v, want a plain error", err)
	}
	if n, _ := trips.Count(); n != 9 {
		t.Errorf("%d round trips, want 9 (the write of the row as the store wrote it, then 4 attempts of a read and a write)", n)
	}
	if _, err := s.Authorization(ctx, "z1"); !errors.Is(err, authority.ErrNotFound) {
		t.Errorf("authorization after a failed consumption: %v, want ErrNotFound", err)
	}
	if h, err := s.History(ctx, "msn_r1"); err != nil || len(h) != 2 {
		t.Errorf("history after a failed consumption: %d records, %v; want the 2 of its creation", len(h), err)
	}
}

// TestConsumeGenericPlans (#19 item 6): a consumption's statements run on
// the server's cached generic plans, under the default plan_cache_mode,
// after the first executions on a connection, the claim and write of a
// pass the store issued included. They were planned anew for
// each execution (the array of ancestors made the generic plan look
// dearer than any custom one), and the planning cost more than the
// execution.
func TestConsumeGenericPlans(t *testing.T) {
	base := pgtest.Pool(t)
	if err := authoritypg.New(base).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	pool := pgtest.OneConnPool(t, base) // every statement on one connection
	s, seed := authoritypg.New(pool), authoritypg.New(base)
	rc := dpoppg.New(pool, dpoppg.WithClock(func() time.Time { return t0 }))
	if err := rc.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const rounds = 8
	for i := range rounds {
		parent := approved(t, seed, fmt.Sprintf("root%d", i), fmt.Sprintf("hr%d", i))
		child(t, seed, fmt.Sprintf("kid%d", i), fmt.Sprintf("hk%d", i), parent.MissionID)
		for _, h := range []string{"hk", "hr"} {
			if _, err := s.ConsumePass(ctx, fmt.Sprintf("%s%d", h, i), svcA, fmt.Sprintf("z%s%d", h, i), t0); err != nil {
				t.Fatal(err)
			}
		}
		// A pass this store issued: the claim and the write in one.
		approved(t, s, fmt.Sprintf("own%d", i), fmt.Sprintf("ho%d", i))
		var got dpop.ReplayCache
		if _, err := s.ConsumePassRecorded(ctx, fmt.Sprintf("ho%d", i), svcA, fmt.Sprintf("zo%d", i), t0, rc,
			recordJTI(fmt.Sprintf("plan%d", i), &got)); err != nil {
			t.Fatal(err)
		}
	}
	replanned, checked := pgtest.Replanned(t, pool)
	if len(replanned) > 0 {
		t.Errorf("planned anew on every execution: %q", replanned)
	}
	if checked < 3 { // the read, the writes, the claim and write
		t.Errorf("%d statements ran often enough to be checked, want 3 or more", checked)
	}
}

// TestConsumeHeapOnly (#19 item 6): consuming a pass can update its row
// without a new entry in any of the table's indexes (a heap-only update):
// the consumption changes no indexed column, and the table keeps room on
// its pages for the new row version. It was the dearest part of the
// consumption's write. Whether the server does make a given update
// heap-only also depends on whether it could prune the page, which a
// transaction anywhere in the cluster (another package's tests) can hold
// back, so the test checks the conditions, and only logs the count.
func TestConsumeHeapOnly(t *testing.T) {
	base := pgtest.Pool(t)
	seed := authoritypg.New(base)
	if err := seed.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	pool := pgtest.OneConnPool(t, base) // every statement on one connection
	const n = 20
	for i := range n {
		approved(t, seed, fmt.Sprintf("r%d", i), fmt.Sprintf("h%d", i))
	}
	updates := func() (all, hot int64) {
		t.Helper()
		if _, err := pool.Exec(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
			WHERE relid = 'agentpass_authority_requests'::regclass`).Scan(&all, &hot); err != nil {
			t.Fatal(err)
		}
		return all, hot
	}
	// No index covers a column the consumption writes, but ends_at, which
	// it leaves as it is (checked below): a column written with its own
	// value does not stop a heap-only update.
	rows, err := pool.Query(ctx, `SELECT indexdef FROM pg_indexes
		WHERE schemaname = current_schema() AND tablename = 'agentpass_authority_requests'`)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(defs) == 0 {
		t.Fatalf("indexes: %v (%d)", err, len(defs))
	}
	for _, def := range defs {
		for _, col := range []string{"consumed_at", "authorization_id", "history_head", "history_count"} {
			if regexp.MustCompile(`\b` + col + `\b`).MatchString(def) {
				t.Errorf("index on a column the consumption writes (%s): %s", col, def)
			}
		}
	}
	var opts []string
	if err := pool.QueryRow(ctx, `SELECT coalesce(reloptions, '{}') FROM pg_class
		WHERE oid = 'agentpass_authority_requests'::regclass`).Scan(&opts); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(opts, "fillfactor=75") {
		t.Errorf("requests table options %q, want fillfactor=75", opts)
	}
	endsAt := func() map[string]time.Time {
		t.Helper()
		rows, err := pool.Query(ctx, `SELECT id, ends_at FROM agentpass_authority_requests`)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]time.Time{}
		for rows.Next() {
			var id string
			var at time.Time
			if err := rows.Scan(&id, &at); err != nil {
				t.Fatal(err)
			}
			out[id] = at
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	ends0 := endsAt()
	all0, hot0 := updates()
	s := authoritypg.New(pool)
	for i := range n {
		if _, err := s.ConsumePass(ctx, fmt.Sprintf("h%d", i), svcA, fmt.Sprintf("z%d", i), t0); err != nil {
			t.Fatal(err)
		}
	}
	all, hot := updates()
	if all-all0 != n {
		t.Errorf("%d consumptions made %d updates", n, all-all0)
	}
	t.Logf("%d consumptions: %d heap-only updates", n, hot-hot0)
	if diff := cmp.Diff(ends0, endsAt()); diff != "" {
		t.Errorf("the consumptions changed ends_at (-before +after):\n%s", diff)
	}
	// The write computes the hooks log's order key of its history record
	// itself, as the insert trigger does for every other record: set, and
	// never behind the mission's previous record.
	var bad, redeemed int
	if err := pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE h.log_xid = '0'::xid8 OR h.log_xid < p.log_xid), count(*)
		FROM agentpass_authority_mission_history h
		JOIN agentpass_authority_mission_history p ON p.mission_id = h.mission_id AND p.seq = h.seq - 1
		WHERE convert_from(h.body, 'UTF8') LIKE '%"redeemed"%'`).Scan(&bad, &redeemed); err != nil {
		t.Fatal(err)
	}
	if bad != 0 || redeemed != n {
		t.Errorf("%d of %d redeemed records without their order key (want %d records)", bad, redeemed, n)
	}
}

// TestConsumeWriteRunsNoTrigger (#19 item 6): the consumption's write runs
// no trigger, read from the server's own EXPLAIN ANALYZE of it
// (auto_explain, loaded for this test's connection only). The history's
// foreign key ran its check there on every consumption (a lookup and a
// lock of the row the statement had just updated, a sixth of the write's
// time) until migration 010, and the hooks log's trigger before migration
// 009.
func TestConsumeWriteRunsNoTrigger(t *testing.T) {
	base := pgtest.Pool(t)
	seed := authoritypg.New(base)
	if err := seed.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	parent := approved(t, seed, "root", "hr")
	child(t, seed, "kid", "hk", parent.MissionID)
	cfg := base.Config()
	cfg.MaxConns = 1
	for k, v := range map[string]string{
		"session_preload_libraries":     "auto_explain",
		"auto_explain.log_min_duration": "0",
		"auto_explain.log_analyze":      "on",
		"auto_explain.log_triggers":     "on",
		"auto_explain.log_timing":       "off",
		"auto_explain.log_level":        "notice",
		"client_min_messages":           "notice",
	} {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	var (
		mu     sync.Mutex
		writes []string
	)
	cfg.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if strings.Contains(n.Message, "UPDATE agentpass_authority_requests") && strings.Contains(n.Message, "consumed_at = ") {
			mu.Lock()
			writes = append(writes, n.Message)
			mu.Unlock()
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pool.Ping(ctx); err != nil {
		t.Skipf("auto_explain is not available to this test's role: %v", err)
	}
	s := authoritypg.New(pool)
	for _, h := range []string{"hk", "hr"} {
		if _, err := s.ConsumePass(ctx, h, svcA, "z"+h, t0); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(writes) != 2 {
		t.Fatalf("%d explained consumption writes, want 2 (a sub-agent's and a root's)", len(writes))
	}
	for _, w := range writes {
		if !strings.Contains(w, "Insert on agentpass_authority_mission_history") {
			t.Fatalf("explained write without its history insert:\n%s", w)
		}
		if strings.Contains(w, "Trigger") {
			t.Errorf("the consumption's write runs a trigger:\n%s", w)
		}
	}
}
