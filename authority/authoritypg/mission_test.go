package authoritypg_test

import (
	"errors"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/pass"
)

// R8 (store part): 100 concurrent complete/revoke/suspend calls from two
// replicas, each with its own pool on one database: exactly one terminal
// transition, versions without gaps.
func TestMissionRaceTwoReplicas(t *testing.T) {
	pool := pgtest.Pool(t)
	s1 := authoritypg.New(pool)
	if err := s1.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := authoritypg.New(pgtest.SharedPool(t, pool))
	authoritytest.RaceMission(t, s1, s2)
}

// R7: flipping one byte of a stored history entry makes VerifyHistory name
// that entry's seq.
func TestVerifyHistoryTampered(t *testing.T) {
	pool := pgtest.Pool(t)
	s := authoritypg.New(pool)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	a, err := authority.New(authority.Config{Identifier: "https://idp.corp.example", TrustMode: pass.TrustEnterprise, Keys: keys, Store: s,
		Now: func() time.Time { return t0.Add(time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	approved(t, s, "r1", "h1")
	if _, err := s.ConsumePass(ctx, "h1", svcA, "z1", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Suspend(ctx, "z1", "human:op", "look"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Resume(ctx, "msn_r1", "human:op"); err != nil {
		t.Fatal(err)
	}
	if err := a.VerifyHistory(ctx, "msn_r1"); err != nil {
		t.Fatalf("intact history: %v", err)
	}
	rec, err := a.Mission(ctx, "msn_r1")
	if err != nil || rec.Version != 4 || len(rec.History.Events) != 5 || rec.History.Head != rec.History.Events[4].Hash {
		t.Fatalf("operator view: %+v %v", rec, err)
	}
	// Flip one byte (a letter of the type) of entry 3.
	if _, err := pool.Exec(ctx, `UPDATE agentpass_authority_mission_history
		SET body = set_byte(body, position('redeemed'::bytea in body), get_byte(body, position('redeemed'::bytea in body)) # 1)
		WHERE mission_id = 'msn_r1' AND seq = 3`); err != nil {
		t.Fatal(err)
	}
	err = a.VerifyHistory(ctx, "msn_r1")
	var he *authority.HistoryError
	if !errors.As(err, &he) || he.Seq != 3 {
		t.Fatalf("VerifyHistory after tampering: %v, want seq 3", err)
	}
}

// D8 (store part) and the last child slot: creations from two replicas,
// each with its own pool on one database, race for the slots and race a
// revocation of their parent.
func TestCreateChildRaceTwoReplicas(t *testing.T) {
	pool := pgtest.Pool(t)
	s1 := authoritypg.New(pool)
	if err := s1.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := authoritypg.New(pgtest.SharedPool(t, pool))
	authoritytest.RaceChildren(t, s1, s2)
}

// Two replicas race stage moves of one mission, all expecting the same
// version: exactly one wins.
func TestStageRaceTwoReplicas(t *testing.T) {
	pool := pgtest.Pool(t)
	s1 := authoritypg.New(pool)
	if err := s1.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := authoritypg.New(pgtest.SharedPool(t, pool))
	authoritytest.RaceStages(t, s1, s2)
}
