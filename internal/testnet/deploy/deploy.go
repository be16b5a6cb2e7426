// Package deploy builds AgentPass parties on a [testnet.Network]:
// Authorities, Services and Harnesses wired to the network's DNS, TLS
// client and clock, each role as one or more replicas over shared stores
// (in memory or on PostgreSQL), and a [Balancer] that serves replicas
// behind one host name.
//
// # Overview
//
// Every network of the module is built here: the harness end-to-end
// network, the multi-replica deployment, the conformance suites' replica
// races and the example sandbox behind the demo and the devnet. A party's
// wiring to the network (its discovery client on the shared clock, the
// network's TLS client, private addresses allowed because everything
// listens on loopback) therefore exists once.
//
// # Usage
//
// Build a template configuration with the fields a test cares about and
// let the builder fill in the rest:
//
//	n := testnet.New(t)
//	clock := testnet.NewClock(time.Now())
//	auths, err := deploy.Authorities(n, authority.Config{
//		Identifier: "https://idp.corp.test", TrustMode: pass.TrustEnterprise, Now: clock.Now,
//	})
//	n.Serve("idp.corp.test", auths[0])
//	n.PublishEnterprise("corp.test", auths[0].ConfigurationURL())
//
// The functions return errors instead of failing a test, so that the demo
// and the devnet can use them too.
package deploy

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/dpop/dpoppg"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/service"
	"github.com/agentpass-go/agentpass/service/servicepg"
)

// Stores are the stores of one replica. A nil field keeps the template
// configuration's store (nil there too: the role's in-memory default).
type Stores struct {
	Authority   authority.Store
	Service     service.Store
	ReplayCache dpop.ReplayCache
}

// Postgres returns stores of every role on pool (authoritypg, servicepg and
// the one dpoppg replay table), migrated, on the clock now (nil:
// time.Now). Replicas that share a schema through pools of their own
// behave as separate processes would.
func Postgres(ctx context.Context, pool *pgxpool.Pool, now func() time.Time) (Stores, error) {
	var aopts []authoritypg.Option
	var sopts []servicepg.Option
	if now != nil {
		aopts = append(aopts, authoritypg.WithClock(now))
		sopts = append(sopts, servicepg.WithClock(now))
	}
	as, ss, rc := authoritypg.New(pool, aopts...), servicepg.New(pool, sopts...), dpoppg.New(pool, dpoppg.WithClock(now))
	for name, m := range map[string]interface{ Migrate(context.Context) error }{"authority": as, "service": ss, "replay cache": rc} {
		if err := m.Migrate(ctx); err != nil {
			return Stores{}, fmt.Errorf("deploy: migrating the %s store: %w", name, err)
		}
	}
	return Stores{Authority: as, Service: ss, ReplayCache: rc}, nil
}

// Authorities builds one Authority per element of replicas from the
// template cfg (no replicas: one, on cfg's own stores). Replicas share
// cfg's Identifier and keys; each has its own discovery client, as
// separate processes would. Filled in where cfg leaves them zero: Keys (a
// generated key set), Approver (approve everything, see [ApproveAll]),
// Discovery (a client of n on cfg.Now, per replica), HTTPClient (n's
// client); InsecureAllowPrivateNetworks is set, since n is on loopback.
func Authorities(n *testnet.Network, cfg authority.Config, replicas ...Stores) ([]*authority.Authority, error) {
	if cfg.Keys == nil {
		ks, err := dpop.GenerateKeySet()
		if err != nil {
			return nil, err
		}
		cfg.Keys = ks
	}
	if cfg.Approver == nil {
		cfg.Approver = ApproveAll("policy:test")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = n.Client()
	}
	cfg.InsecureAllowPrivateNetworks = true
	if len(replicas) == 0 {
		replicas = []Stores{{}}
	}
	out := make([]*authority.Authority, 0, len(replicas))
	for i, st := range replicas {
		c := cfg
		if c.Discovery == nil {
			c.Discovery = n.DiscoveryAt(cfg.Now)
		}
		if st.Authority != nil {
			c.Store = st.Authority
		}
		if st.ReplayCache != nil {
			c.ReplayCache = st.ReplayCache
		}
		a, err := authority.New(c)
		if err != nil {
			return nil, fmt.Errorf("deploy: Authority %s (replica %d): %w", cfg.Identifier, i, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// Services builds one Service per element of replicas from the template
// cfg (no replicas: one, on cfg's own stores). Replicas share cfg's Origin
// and keys; each has its own discovery client. Filled in where cfg leaves
// them zero: Keys (a generated key set), Discovery (a client of n on
// cfg.Now, per replica), HTTPClient (n's client);
// InsecureAllowPrivateNetworks is set, since n is on loopback.
func Services(n *testnet.Network, cfg service.Config, replicas ...Stores) ([]*service.Service, error) {
	if cfg.Keys == nil {
		ks, err := dpop.GenerateKeySet()
		if err != nil {
			return nil, err
		}
		cfg.Keys = ks
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = n.Client()
	}
	cfg.InsecureAllowPrivateNetworks = true
	if len(replicas) == 0 {
		replicas = []Stores{{}}
	}
	out := make([]*service.Service, 0, len(replicas))
	for i, st := range replicas {
		c := cfg
		if c.Discovery == nil {
			c.Discovery = n.DiscoveryAt(cfg.Now)
		}
		if st.Service != nil {
			c.Store = st.Service
		}
		if st.ReplayCache != nil {
			c.ReplayCache = st.ReplayCache
		}
		s, err := service.New(c)
		if err != nil {
			return nil, fmt.Errorf("deploy: Service %s (replica %d): %w", cfg.Origin, i, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// Harness builds a Harness client from the template cfg. Filled in where
// cfg leaves them zero: HarnessID ("test-harness"), Discovery (a client of
// n on cfg.Now), HTTPClient (n's client); InsecureAllowPrivateNetworks is
// set, since n is on loopback.
func Harness(n *testnet.Network, cfg harness.Config) (*harness.Client, error) {
	if cfg.HarnessID == "" {
		cfg.HarnessID = "test-harness"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = n.Client()
	}
	if cfg.Discovery == nil {
		cfg.Discovery = n.DiscoveryAt(cfg.Now)
	}
	cfg.InsecureAllowPrivateNetworks = true
	h, err := harness.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("deploy: Harness: %w", err)
	}
	return h, nil
}

// ApproveAll is an approver that approves every request with every
// available scope, recording decidedBy.
func ApproveAll(decidedBy string) authority.Approver {
	return authority.ApproverFunc(func(context.Context, *authority.Request) (authority.Decision, error) {
		return authority.Decision{Outcome: authority.Approve, DecidedBy: decidedBy}, nil
	})
}

// Unlimited returns a rate limit with every level turned off, for tests
// that send thousands of requests from one loopback address on a frozen
// clock, which the defaults rightly refuse.
func Unlimited() authority.RateLimit {
	off := authority.Rate{PerSecond: -1}
	return authority.RateLimit{Client: off, Network: off, User: off, Domain: off, Overall: off}
}
