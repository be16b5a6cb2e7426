package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/examples/internal/todoapp"
)

// Manifest is manifest.json: everything a tool needs to use the devnet.
type Manifest struct {
	ManifestFile string `json:"manifest_file"`
	// CAFile is the PEM certificate of the throwaway CA every host's
	// certificate chains to.
	CAFile string `json:"ca_file"`
	// DNS is the DNS server (UDP and TCP): the discovery TXT records, and
	// A records of every host (127.0.0.1).
	DNS string `json:"dns"`
	// Hosts maps each host name to the loopback address it listens on.
	Hosts map[string]string `json:"hosts"`
	// EtcHosts are lines for /etc/hosts, for tools that cannot use DNS.
	EtcHosts []string `json:"etc_hosts"`
	// Curl gives each host's --resolve argument ("todo.test:8443:127.0.0.1").
	Curl map[string]string `json:"curl_resolve"`
	// DNSRecords are the TXT records published.
	DNSRecords map[string]string `json:"dns_records"`
	// AdminToken is the bearer token of every approval page's admin API.
	AdminToken  string              `json:"admin_token"`
	Store       string              `json:"store"` // memory or postgres
	Service     ManifestService     `json:"service"`
	Authorities []ManifestAuthority `json:"authorities"`
	Users       []ManifestUser      `json:"users"`
	// External lists your own servers added with -external.
	External []ManifestExternal `json:"external,omitempty"`
}

// ManifestExternal is a server of yours that the devnet reaches.
type ManifestExternal struct {
	Host     string `json:"host"`
	Addr     string `json:"addr"`
	Origin   string `json:"origin"`
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}

// ManifestService describes the to-do Service.
type ManifestService struct {
	Origin           string   `json:"origin"`
	ConfigurationURL string   `json:"configuration_url"`
	API              string   `json:"api"`
	App              string   `json:"app"`
	Scopes           []string `json:"scopes"`
}

// ManifestAuthority describes one Authority.
type ManifestAuthority struct {
	Name             string `json:"name"`
	Identifier       string `json:"identifier"`
	TrustMode        string `json:"trust_mode"`
	ConfigurationURL string `json:"configuration_url"`
	ApprovalPage     string `json:"approval_page"`
	AdminAPI         string `json:"admin_api"`
}

// ManifestUser is a test user and what to expect for them.
type ManifestUser struct {
	Email string `json:"email"`
	// Branch is what the Service's resolution answered at start-up:
	// enterprise, service, federated, service_or_federated, or refused.
	Branch string `json:"branch"`
	// Authorities lists the identifiers offered.
	Authorities []string `json:"authorities,omitempty"`
	// Error is the Service's refusal ("403 delegation_disabled").
	Error  string `json:"error,omitempty"`
	Expect string `json:"expect"`
}

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
