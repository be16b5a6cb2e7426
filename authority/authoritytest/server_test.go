package authoritytest_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/pass"
)

func whoami(t *testing.T, srv *authoritytest.Server) map[string]any {
	t.Helper()
	agent, err := srv.Agent(t.Context())
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	resp, err := agent.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("call: %s, %v", resp.Status, err)
	}
	return v
}

// Each trust mode is wired as in production: an Enterprise Authority
// through the user's DNS record, a Federated one trusted by the Service,
// a Service Authority as the Service's own.
func TestServerTrustModes(t *testing.T) {
	for _, mode := range []pass.TrustMode{pass.TrustEnterprise, pass.TrustFederated, pass.TrustService} {
		t.Run(string(mode), func(t *testing.T) {
			srv := authoritytest.NewServer(t, authority.Config{Identifier: "https://auth.mine.test", TrustMode: mode}, nil)
			if got := whoami(t, srv); got["authority"] != "https://auth.mine.test" || got["user"] != "alex@corp.test" {
				t.Errorf("the Service saw %v", got)
			}
		})
	}
}

// A revocation at the test's Authority reaches the Service at its next
// check, on the network's clock.
func TestServerRevokeAndClock(t *testing.T) {
	srv := authoritytest.NewServer(t, authority.Config{Identifier: "https://auth.mine.test", TrustMode: pass.TrustEnterprise}, nil)
	agent, err := srv.Agent(t.Context(), "read")
	if err != nil {
		t.Fatal(err)
	}
	auths, err := srv.Authority.Authorizations(t.Context(), authority.ListOptions{Now: srv.Now()})
	if err != nil || len(auths) != 1 {
		t.Fatalf("authorizations: %d, %v", len(auths), err)
	}
	if _, err := srv.Authority.Revoke(t.Context(), auths[0].MissionID, "human:admin@corp.test", "test"); err != nil {
		t.Fatal(err)
	}
	srv.Advance((30 * time.Second) + 1)
	resp, err := agent.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after the revocation: %s, want 401", resp.Status)
	}
}

// With a pool the Authority's requests are in PostgreSQL.
func TestServerPostgres(t *testing.T) {
	pool := pgtest.Pool(t)
	srv := authoritytest.NewServer(t, authority.Config{Identifier: "https://auth.mine.test", TrustMode: pass.TrustEnterprise}, &authoritytest.Options{Pool: pool})
	whoami(t, srv)
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM agentpass_authority_authorizations`).Scan(&n); err != nil || n != 1 {
		t.Errorf("authorizations in PostgreSQL: %d, %v; want 1", n, err)
	}
}
