package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/dpop/dpoppg"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
	"github.com/agentpass-go/agentpass/service/servicepg"
)

// TestProofRecordPerConfiguration: a harness proof is single use (G-3)
// in every configuration of store and replay cache, and only servicepg
// with the dpoppg cache on its own pool records it in Redeem's statement
// (#19 item 6). In each: a proof without aph is accepted once; presented
// with another pass of its key it is refused before the Authority is
// called (the pass is kept, issue #13 item 3); a proof whose redemption
// the application then refuses (OnDelegation) is recorded all the same,
// so it cannot be spent with another pass either, and so is the proof of
// a redemption whose client went away while the application decided.
// Wrappers that embed servicepg's Store or dpoppg's cache are not folded
// around: their overrides run (found in review).
func TestProofRecordPerConfiguration(t *testing.T) {
	var redeems, seens atomic.Int32
	for _, tc := range []struct {
		name   string
		folded bool
		setup  func(t *testing.T, e *env, pool *pgxpool.Pool) (service.Store, dpop.ReplayCache)
		// overridden, if set, counts the calls of a wrapper's override.
		overridden *atomic.Int32
	}{
		{"servicepg and dpoppg on its pool", true, func(t *testing.T, e *env, pool *pgxpool.Pool) (service.Store, dpop.ReplayCache) {
			return migrated(t, servicepg.New(pool)), migrated(t, dpoppg.New(pool, dpoppg.WithClock(e.clock.Now)))
		}, nil},
		{"servicepg and dpoppg on another pool", false, func(t *testing.T, e *env, pool *pgxpool.Pool) (service.Store, dpop.ReplayCache) {
			return migrated(t, servicepg.New(pool)), migrated(t, dpoppg.New(pgtest.SharedPool(t, pool), dpoppg.WithClock(e.clock.Now)))
		}, nil},
		{"servicepg and the memory caches", false, func(t *testing.T, e *env, pool *pgxpool.Pool) (service.Store, dpop.ReplayCache) {
			return migrated(t, servicepg.New(pool)), nil
		}, nil},
		{"memory store and dpoppg", false, func(t *testing.T, e *env, pool *pgxpool.Pool) (service.Store, dpop.ReplayCache) {
			return service.NewMemoryStore(), migrated(t, dpoppg.New(pool, dpoppg.WithClock(e.clock.Now)))
		}, nil},
		{"a wrapper of servicepg and dpoppg on its pool", false, func(t *testing.T, e *env, pool *pgxpool.Pool) (service.Store, dpop.ReplayCache) {
			return auditStore{migrated(t, servicepg.New(pool)), &redeems}, migrated(t, dpoppg.New(pool, dpoppg.WithClock(e.clock.Now)))
		}, &redeems},
		{"servicepg and a wrapper of dpoppg on its pool", false, func(t *testing.T, e *env, pool *pgxpool.Pool) (service.Store, dpop.ReplayCache) {
			return migrated(t, servicepg.New(pool)), tenantCache{migrated(t, dpoppg.New(pool, dpoppg.WithClock(e.clock.Now))), &seens}
		}, &seens},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, trips := pgtest.CountedPool(t, pgtest.Pool(t))
			var refuse, hang atomic.Bool
			entered := make(chan struct{})
			e := newNet(t)
			store, cache := tc.setup(t, e, pool)
			e.start(func(c *service.Config) {
				c.Store, c.ReplayCache = store, cache
				c.OnDelegation = func(ctx context.Context, _ *service.Delegation) error {
					if hang.Load() { // until the client goes away
						entered <- struct{}{}
						<-ctx.Done()
						return ctx.Err()
					}
					if refuse.Load() {
						return errors.New("test: refused")
					}
					return nil
				}
			})
			h := newHarness(t)
			unbound := func() *pass.JWTContainer {
				t.Helper()
				jwt, err := h.key.HarnessProof(dpop.ProofParams{HarnessID: h.id, Audience: appURL, Method: http.MethodPost,
					URL: e.endpoint(pass.BearerToken), Now: e.clock.Now()})
				if err != nil {
					t.Fatal(err)
				}
				return &pass.JWTContainer{JWT: jwt}
			}
			redeem := func(proof *pass.JWTContainer) *response {
				t.Helper()
				vr := validation(corpUser, pass.BearerToken)
				vr.Cnf = h.cnf()
				req := redemption(e.idp, pass.BearerToken, corpUser, e.idp.issue(vr))
				req.HarnessProof = proof
				return e.redeem(pass.BearerToken, req, nil)
			}
			replayRefused := func(what string, r *response) {
				t.Helper()
				if r.status != http.StatusConflict || r.errorCode() != pass.CodeInvalidHarnessProof || !strings.Contains(string(r.body), "replayed") {
					t.Errorf("%s: %d %s, want 409 invalid_harness_proof, replayed", what, r.status, r.body)
				}
			}

			first := unbound()
			trips.Reset()
			if r := redeem(first); r.status != http.StatusOK {
				t.Fatalf("first use: %d %s", r.status, r.body)
			}
			_, stmts := trips.Count()
			folded := slices.ContainsFunc(stmts, func(s string) bool { return strings.HasPrefix(s, "WITH claim") })
			if folded != tc.folded {
				t.Errorf("record folded into Redeem = %v, want %v (%q)", folded, tc.folded, stmts)
			}
			calls := e.idp.validateCalls.Load()
			replayRefused("the proof with another pass", redeem(first))

			refuse.Store(true)
			second := unbound()
			if r := redeem(second); r.status != http.StatusForbidden || r.errorCode() != pass.CodeDelegationRejected {
				t.Fatalf("refused by the application: %d %s", r.status, r.body)
			}
			refuse.Store(false)
			replayRefused("the proof of a refused redemption with another pass", redeem(second))
			if n := e.idp.validateCalls.Load() - calls; n != 1 {
				t.Errorf("%d validations after the first redemption, want 1: a replayed proof burned a pass", n)
			}
			_, creds, err := storeLen(t, store, pool)
			if err != nil {
				t.Fatal(err)
			}
			if creds != 1 {
				t.Errorf("%d credentials stored, want 1", creds)
			}

			// The client of the third goes away while the application
			// decides: the request's context ends before the proof could
			// be recorded with the credential, and it is recorded all the
			// same. ServeHTTP returns once the handler is done.
			hang.Store(true)
			third := unbound()
			vr := validation(corpUser, pass.BearerToken)
			vr.Cnf = h.cnf()
			req := redemption(e.idp, pass.BearerToken, corpUser, e.idp.issue(vr))
			req.HarnessProof = third
			body, err := json.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			hr := httptest.NewRequestWithContext(ctx, http.MethodPost, e.endpoint(pass.BearerToken), bytes.NewReader(body))
			hr.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			done := make(chan struct{})
			go func() {
				defer close(done)
				e.svc.ServeHTTP(rec, hr)
			}()
			<-entered
			cancel()
			<-done
			hang.Store(false)
			if rec.Code == http.StatusOK {
				t.Fatalf("abandoned redemption: %d %s", rec.Code, rec.Body)
			}
			replayRefused("the proof of an abandoned redemption with another pass", redeem(third))
			if tc.overridden != nil && tc.overridden.Load() == 0 {
				t.Error("the wrapper's override was never called: the fold went around it")
			}
		})
	}
}

// auditStore is an application's wrapper around servicepg's Store that
// must see every Redeem.
type auditStore struct {
	*servicepg.Store
	redeems *atomic.Int32
}

func (s auditStore) Redeem(ctx context.Context, d *service.DelegationRecord, c *service.CredentialRecord, i *service.InitRecord) error {
	s.redeems.Add(1)
	return s.Store.Redeem(ctx, d, c, i)
}

// tenantCache is an application's wrapper around the dpoppg table with a
// namespace of its own, for lookups and records alike.
type tenantCache struct {
	*dpoppg.ReplayCache
	seen *atomic.Int32
}

func (c tenantCache) Seen(ctx context.Context, iss, jti string, exp time.Time) (bool, error) {
	c.seen.Add(1)
	return c.ReplayCache.Seen(ctx, "tenant-a:"+iss, jti, exp)
}

func (c tenantCache) Contains(ctx context.Context, iss, jti string) (bool, error) {
	return c.ReplayCache.Contains(ctx, "tenant-a:"+iss, jti)
}

// migrated migrates m once and returns it.
func migrated[M interface{ Migrate(context.Context) error }](t *testing.T, m M) M {
	t.Helper()
	if err := m.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return m
}

// storeLen returns the delegations and credentials of a memory store or of
// the servicepg tables on pool.
func storeLen(t *testing.T, s service.Store, pool *pgxpool.Pool) (delegations, creds int, err error) {
	t.Helper()
	if m, ok := s.(*service.MemoryStore); ok {
		d, c, _ := m.Len()
		return d, c, nil
	}
	err = pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM agentpass_service_delegations), (SELECT count(*) FROM agentpass_service_credentials)`).
		Scan(&delegations, &creds)
	return delegations, creds, err
}
