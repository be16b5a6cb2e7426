package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/pass/conformance"
	"github.com/agentpass-go/agentpass/service"
)

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestConformanceAgainstTheDevnet runs `agentpass conformance` against the
// devnet's parties as an outside tool: DNS discovery through -dns, the CA
// through -ca, approvals and revocations through the admin API, and the
// kit's Service on two hosts the devnet serves as externals (-kit). Every
// check passes or is skipped; the JSON and HTML reports are written.
func TestConformanceAgainstTheDevnet(t *testing.T) {
	n := testnet.New(t)
	// As the devnet runs, with events pushed to the to-do Service, plus a
	// scope compiler, so that the kit's mission-layer checks have every
	// extension to judge.
	compiler, err := authority.NewTemplates("cli-test", []authority.Template{{ID: "reading", Version: "1", Any: []string{"read"},
		Scopes: []authority.ScopeSelector{{Suffix: ":read", Why: "the task reads"}}}})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.Build(n, sandbox.Options{
		ExplicitPorts: true, ApprovalPages: true, AdminToken: "devtoken", AuthorityChoice: service.OfferServiceAndFederated,
		PollAfter: 100 * time.Millisecond, CheckInterval: 200 * time.Millisecond,
		EventDelivery: pass.DeliveryPush, Compiler: compiler,
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, n.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	var kits []string
	for _, host := range []string{"kit-a.test", "kit-b.test"} {
		addr := freeAddr(t)
		origin, certPEM, keyPEM, err := n.AddExternal(host, addr)
		if err != nil {
			t.Fatal(err)
		}
		cert, key := filepath.Join(dir, host+".pem"), filepath.Join(dir, host+"-key.pem")
		if err := os.WriteFile(cert, certPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		n.PublishService(host, origin+"/agentpass-conformance/configuration")
		kits = append(kits, "-kit", strings.Join([]string{origin, cert, key, addr}, ","))
	}
	e := &env{t: t, sb: sb, global: []string{"-ca", ca, "-dns", n.DNS.Addr()}, cache: t.TempDir()}
	html := filepath.Join(dir, "report.html")
	args := append([]string{"-json", "conformance", sb.TodoOrigin, "-user", sandbox.UserEnterprise,
		"-admin-token", "devtoken", "-user-none", sandbox.UserNone, "-user-broken", sandbox.UserBroken, "-api", sb.TodoOrigin + "/api/todos", "-html", html}, kits...)
	code, out, stderr := e.run(nil, args...)
	rep := decode[conformance.Report](t, out)
	for _, r := range rep.Results {
		if r.Outcome == conformance.Fail || r.Outcome == conformance.Warn {
			t.Errorf("%s %s %q: %s", r.Outcome, r.ID, r.Name, r.Got)
		}
	}
	if code != 0 {
		t.Errorf("exit %d; stderr %s", code, stderr)
	}
	for _, r := range rep.Results {
		if strings.HasPrefix(r.ID, "ext:") {
			t.Logf("%s %s %q: %s", r.Outcome, r.ID, r.Name, r.Got)
		}
	}
	if n := rep.Count(conformance.Pass); n < 35 {
		var skipped []string
		for _, r := range rep.Results {
			if r.Outcome == conformance.Skip {
				skipped = append(skipped, r.ID+": "+r.Got)
			}
		}
		t.Errorf("only %d checks passed; skipped:\n%s", n, strings.Join(skipped, "\n"))
	}
	b, err := os.ReadFile(html)
	if err != nil || !strings.Contains(string(b), "AgentPass conformance report") || strings.Contains(string(b), "<script") {
		t.Errorf("HTML report: %v", err)
	}
	// No pass, token or proof reaches the report.
	if strings.Contains(out, "apt_") || strings.Contains(out, "eyJhbGciOiJFUzI1NiI") {
		i := max(strings.Index(out, "apt_"), strings.Index(out, "eyJhbGciOiJFUzI1NiI"))
		t.Errorf("the JSON report holds a token or a JWT: %s", out[max(0, i-300):min(len(out), i+100)])
	}
}

// A failing check makes the command exit 1.
func TestConformanceExitStatus(t *testing.T) {
	e := newEnv(t, nil)
	code, _, stderr := e.run(nil, "conformance", e.sb.TodoOrigin, "-user", sandbox.UserNone, "-only", "S-RES-13")
	if code != 1 {
		t.Errorf("exit %d, want 1; stderr %s", code, stderr)
	}
	if code, _, _ := e.run(nil, "conformance", e.sb.TodoOrigin); code != 2 {
		t.Errorf("without -user: exit %d, want 2", code)
	}
}
