package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/examples/devnet/devnetclient"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/examples/internal/todoapp"
)

// The manifest's types are devnetclient's, which programs import to read
// it.
type (
	Manifest          = devnetclient.Manifest
	ManifestExternal  = devnetclient.ManifestExternal
	ManifestService   = devnetclient.ManifestService
	ManifestAuthority = devnetclient.ManifestAuthority
	ManifestUser      = devnetclient.ManifestUser
)

func (d *devnet) buildManifest(ctx context.Context, cfg config, store string) (Manifest, error) {
	sb := d.sb
	m := Manifest{
		ManifestFile: filepath.Join(cfg.dir, "manifest.json"),
		CAFile:       filepath.Join(cfg.dir, "ca.pem"),
		DNS:          d.net.DNS.Addr(),
		Hosts:        map[string]string{},
		Curl:         map[string]string{},
		AdminToken:   cfg.adminToken,
		Store:        store,
		DNSRecords: map[string]string{
			"_agentpass-service." + sandbox.TodoHost: sb.Service.ConfigurationURL(),
			"_agentpass.corp.test":                   sb.Enterprise.ConfigurationURL(),
			"_agentpass.strict.test":                 sb.EnterpriseStrict.ConfigurationURL(),
			"_agentpass.locked.test":                 "none",
			"_agentpass.broken.test":                 sb.Origins[sandbox.BrokenHost] + "/agentpass/configuration",
		},
		Service: ManifestService{
			Origin: sb.TodoOrigin, ConfigurationURL: sb.Service.ConfigurationURL(),
			API: sb.TodoOrigin + "/api/todos", App: sb.TodoOrigin + "/app",
			Scopes: []string{todoapp.ScopeRead, todoapp.ScopeWrite, todoapp.ScopeDelete},
		},
	}
	if abs, err := filepath.Abs(m.ManifestFile); err == nil {
		m.ManifestFile, m.CAFile = abs, filepath.Join(filepath.Dir(abs), "ca.pem")
	}
	for _, h := range sandbox.Hosts {
		addr := d.net.Hosts()[h]
		_, port, _ := net.SplitHostPort(addr)
		m.Hosts[h] = addr
		m.EtcHosts = append(m.EtcHosts, "127.0.0.1 "+h)
		m.Curl[h] = h + ":" + port + ":127.0.0.1"
	}
	names := map[*authority.Authority]string{
		sb.Enterprise:       "enterprise (corp.test)",
		sb.EnterpriseStrict: "enterprise (strict.test)",
		sb.Federated:        "federated",
		sb.ServiceAuthority: "service authority (to-do)",
	}
	for _, a := range sb.Authorities() {
		page := sb.ApprovalPage(a).URL()
		m.Authorities = append(m.Authorities, ManifestAuthority{
			Name: names[a], Identifier: a.Identifier(), TrustMode: string(a.Configuration().TrustMode),
			ConfigurationURL: a.ConfigurationURL(), ApprovalPage: page, AdminAPI: page + "api/",
		})
	}
	expect := map[string]string{
		sandbox.UserEnterprise: "Enterprise Authority of corp.test (allows Service Authorities): a read-only task is approved at once (todos:read); a task that adds, changes or deletes waits on its approval page",
		sandbox.UserStrict:     "Enterprise Authority of strict.test, which forbids Service Authorities; same approval policy",
		sandbox.UserNoRecord:   "no _agentpass record for gmail.test: the Service offers its own Service Authority and the Federated Authority; your harness chooses (CLI: -authority)",
		sandbox.UserNone:       "_agentpass.locked.test is \"none\": the Service refuses (403 delegation_disabled), no fallback",
		sandbox.UserBroken:     "_agentpass.broken.test points at an invalid configuration: the Service refuses (502), no fallback",
	}
	for _, u := range []string{sandbox.UserEnterprise, sandbox.UserStrict, sandbox.UserNoRecord, sandbox.UserNone, sandbox.UserBroken} {
		branch, refs, refusal := resolution(ctx, d, u)
		mu := ManifestUser{Email: u, Branch: branch, Expect: expect[u]}
		if u == sandbox.UserEnterprise && branch == "service" {
			mu.Expect = "corp.test's Enterprise Authority allows Service Authorities and the Service prefers its own: the Service Authority decides, with the same approval policy"
		}
		for _, r := range refs {
			mu.Authorities = append(mu.Authorities, r.Authority)
		}
		if refusal != nil {
			mu.Error = strings.TrimSpace(fmt.Sprintf("%d %s", refusal.Status, refusal.Code))
		}
		m.Users = append(m.Users, mu)
	}
	return m, nil
}
