package authority_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/dpop/dpoppg"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/pgreplay"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/pass"
)

// unboundedMemory is a custom cache that says it has no fixed capacity.
type unboundedMemory struct{ *dpop.MemoryReplayCache }

func (unboundedMemory) Unbounded() {}

// TestValidateRecordsAssertion (#19 item 6, G-8, A-VAL-8): a validation's
// assertion is recorded by every configuration of an Authority on
// PostgreSQL, whether the record travels with the consumption's write (the
// dpoppg table on the store's pool, a pass the store issued, so its row is
// remembered and not read: one round trip) or not (dpoppg on another pool,
// the in-memory cache, a custom unbounded one: the remembered row's write
// alone on the store's pool). In each, a
// replayed assertion is refused before the pass is consumed, and the pass
// then validates with a fresh one; an unbounded cache keeps an assertion
// spent on an unknown pass, the in-memory one does not (the flood rule).
func TestValidateRecordsAssertion(t *testing.T) {
	base := pgtest.Pool(t)
	if err := authoritypg.New(base).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dpoppg.New(base).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		// replay returns the Authority's cache on its clock, given the
		// store's pool and another pool on the same database.
		replay func(now func() time.Time, store, other *pgxpool.Pool) dpop.ReplayCache
		// first: the assertion is recorded before the consumption.
		first bool
		// storeTrips and otherTrips are a validation's round trips on
		// the store's pool and on the other pool.
		storeTrips, otherTrips []string
	}{
		{"dpoppg on the store's pool", func(now func() time.Time, store, _ *pgxpool.Pool) dpop.ReplayCache {
			return dpoppg.New(store, dpoppg.WithClock(now))
		}, true, []string{"WITH"}, nil},
		{"dpoppg on another pool", func(now func() time.Time, _, other *pgxpool.Pool) dpop.ReplayCache {
			return dpoppg.New(other, dpoppg.WithClock(now))
		}, true, []string{"WITH"}, []string{"INSERT"}},
		{"in memory", func(now func() time.Time, _, _ *pgxpool.Pool) dpop.ReplayCache {
			return dpop.NewMemoryReplayCache(dpop.WithClock(now))
		}, false, []string{"WITH"}, nil},
		{"custom unbounded", func(now func() time.Time, _, _ *pgxpool.Pool) dpop.ReplayCache {
			return unboundedMemory{dpop.NewMemoryReplayCache(dpop.WithClock(now))}
		}, true, []string{"WITH"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storePool, storeTrips := pgtest.CountedPool(t, base)
			otherPool, otherTrips := pgtest.CountedPool(t, base)
			var replay dpop.ReplayCache
			e := newEnv(t, approveAll, func(c *authority.Config) {
				c.Store = authoritypg.New(storePool)
				replay = tc.replay(c.Now, storePool, otherPool)
				c.ReplayCache = replay
			})
			post := func(tok, value string) response {
				t.Helper()
				return e.do(http.MethodPost, e.base+"/validate", pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}},
					http.Header{"Authorization": {"Bearer " + tok}})
			}
			var values []string
			for range 4 {
				v, _ := e.approvedPass(e.plainHarness())
				values = append(values, v)
			}
			if r := post(e.svc.Assertion(authID), values[0]); r.status != http.StatusOK { // warm-up
				t.Fatalf("warm-up: %d %s", r.status, r.body)
			}

			tok := e.svc.Assertion(authID)
			storeTrips.Reset()
			otherTrips.Reset()
			if r := post(tok, values[1]); r.status != http.StatusOK {
				t.Fatalf("validation: %d %s", r.status, r.body)
			}
			for _, p := range []struct {
				name  string
				trips *pgtest.Trips
				want  []string
			}{{"store's pool", storeTrips, tc.storeTrips}, {"other pool", otherTrips, tc.otherTrips}} {
				n, stmts := p.trips.Count()
				var words []string
				for _, s := range stmts {
					words = append(words, strings.Fields(s)[0])
				}
				if n != len(p.want) || strings.Join(words, " ") != strings.Join(p.want, " ") {
					t.Errorf("%s: %d round trips %q, want %q", p.name, n, stmts, p.want)
				}
			}
			if rc, ok := replay.(*dpoppg.ReplayCache); ok {
				// dpoppg's own key, in the Authority's assertion
				// namespace, until exp + skew.
				held, err := rc.Contains(ctx, "authority:assertion:"+e.svc.Origin, jtiOf(t, tok))
				if err != nil || !held {
					t.Errorf("Contains: %v, %v; want the assertion recorded", held, err)
				}
				var until time.Time
				if err := base.QueryRow(ctx, `SELECT expires_at FROM agentpass_proof_replay WHERE key = $1`,
					pgreplay.Key("authority:assertion:"+e.svc.Origin, jtiOf(t, tok))).Scan(&until); err != nil {
					t.Fatal(err)
				}
				if want := expOf(t, tok).Add(assertion.DefaultSkew); !until.Equal(want) {
					t.Errorf("recorded until %v, want exp + skew %v", until, want)
				}
			}

			// A replay, with a good pass: refused before consumption.
			r := post(tok, values[2])
			wantError(t, r, http.StatusUnauthorized, pass.CodeInvalidAssertion)
			if !strings.Contains(string(r.body), "replayed") {
				t.Errorf("replay answer %s, want \"assertion replayed\"", r.body)
			}
			if r := post(e.svc.Assertion(authID), values[2]); r.status != http.StatusOK {
				t.Errorf("the replay's pass with a fresh assertion: %d %s", r.status, r.body)
			}

			// Spent on an unknown pass.
			spent := e.svc.Assertion(authID)
			wantError(t, post(spent, "ap_made-up"), http.StatusNotFound, pass.CodeAgentPassInvalid)
			r = post(spent, values[3])
			if tc.first {
				wantError(t, r, http.StatusUnauthorized, pass.CodeInvalidAssertion)
			} else if r.status != http.StatusOK {
				t.Errorf("an assertion spent on an unknown pass, in memory: %d %s, want it unrecorded", r.status, r.body)
			}
		})
	}
}

func claimsOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func jtiOf(t *testing.T, tok string) string {
	jti, _ := claimsOf(t, tok)["jti"].(string)
	if jti == "" {
		t.Fatal("assertion without jti")
	}
	return jti
}

func expOf(t *testing.T, tok string) time.Time {
	exp, _ := claimsOf(t, tok)["exp"].(float64)
	return time.Unix(int64(exp), 0)
}

// policyStore is an operator's wrapper around authoritypg's Store that
// refuses every consumption: its ConsumePass must be the one called.
type policyStore struct {
	*authoritypg.Store
	calls *atomic.Int32
}

func (s policyStore) ConsumePass(context.Context, string, string, string, time.Time) (*authority.Consumption, error) {
	s.calls.Add(1)
	return nil, authority.ErrNotFound
}

// tenantCache is an operator's wrapper around the dpoppg table with a
// namespace of its own: its Seen must be the one that records.
type tenantCache struct {
	*dpoppg.ReplayCache
	seen *atomic.Int32
}

func (c tenantCache) Seen(ctx context.Context, iss, jti string, exp time.Time) (bool, error) {
	c.seen.Add(1)
	return c.ReplayCache.Seen(ctx, "tenant-a:"+iss, jti, exp)
}

// TestValidateHonoursWrappers (#19 item 6; found in review): the record
// is folded only into authoritypg's Store itself with the dpoppg table
// itself. A value embedding either has the methods the fold would call
// (promoted), but its own overrides must run: a store wrapper's
// ConsumePass (an operator's policy) and a cache wrapper's Seen (a
// namespace of its own, which a fold would skip, so that replicas with
// and without the fold would record one assertion under two keys).
func TestValidateHonoursWrappers(t *testing.T) {
	base := pgtest.Pool(t)
	if err := authoritypg.New(base).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dpoppg.New(base).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("store wrapper", func(t *testing.T) {
		var calls atomic.Int32
		e := newEnv(t, approveAll, func(c *authority.Config) {
			c.Store = policyStore{authoritypg.New(base), &calls}
			c.ReplayCache = dpoppg.New(base, dpoppg.WithClock(c.Now))
		})
		v, _ := e.approvedPass(e.plainHarness())
		r := e.do(http.MethodPost, e.base+"/validate", pass.ValidationRequest{AgentPass: pass.PassValue{Value: v}},
			http.Header{"Authorization": {"Bearer " + e.svc.Assertion(authID)}})
		if r.status == http.StatusOK || calls.Load() != 1 {
			t.Errorf("validation through a store wrapper refusing all: %d %s, its ConsumePass called %d times, want a refusal and 1",
				r.status, r.body, calls.Load())
		}
	})
	t.Run("cache wrapper", func(t *testing.T) {
		var seen atomic.Int32
		e := newEnv(t, approveAll, func(c *authority.Config) {
			c.Store = authoritypg.New(base)
			c.ReplayCache = tenantCache{dpoppg.New(base, dpoppg.WithClock(c.Now)), &seen}
		})
		v, _ := e.approvedPass(e.plainHarness())
		tok := e.svc.Assertion(authID)
		post := func() response {
			return e.do(http.MethodPost, e.base+"/validate", pass.ValidationRequest{AgentPass: pass.PassValue{Value: v}},
				http.Header{"Authorization": {"Bearer " + tok}})
		}
		if r := post(); r.status != http.StatusOK {
			t.Fatalf("validation: %d %s", r.status, r.body)
		}
		if seen.Load() == 0 {
			t.Error("the cache wrapper's Seen was never called: the record went around it")
		}
		if r := post(); r.status == http.StatusOK || !strings.Contains(string(r.body), "replayed") {
			t.Errorf("the assertion replayed: %d %s, want it refused as replayed", r.status, r.body)
		}
	})
}
