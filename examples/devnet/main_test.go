package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/examples/devnet/devnetclient"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/pass"
)

// TestDevnet starts the devnet in-process and uses it as an outside tool
// would, from the manifest alone: resolve a host through the DNS server (A
// record), verify TLS with the CA file, fetch the Service configuration and
// call the admin API with and without the token.
func TestDevnet(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := start(ctx, config{dir: dir, dnsAddr: "127.0.0.1:0", adminToken: "tok-1234"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			d.Close()
		}
	}()

	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "manifest.json")); fi.Mode().Perm() != 0o600 {
		t.Errorf("manifest.json mode %v, want 0600 (it holds the admin token)", fi.Mode().Perm())
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.AdminToken != "tok-1234" || m.DNS == "" || m.CAFile != filepath.Join(dir, "ca.pem") || m.Store != "memory" {
		t.Errorf("manifest: token %q dns %q ca %q store %q", m.AdminToken, m.DNS, m.CAFile, m.Store)
	}
	for _, h := range sandbox.Hosts {
		_, port, err := net.SplitHostPort(m.Hosts[h])
		if err != nil {
			t.Fatalf("hosts[%s] = %q", h, m.Hosts[h])
		}
		if want := h + ":" + port + ":127.0.0.1"; m.Curl[h] != want {
			t.Errorf("curl_resolve[%s] = %q, want %q", h, m.Curl[h], want)
		}
	}
	if !strings.HasPrefix(m.Service.Origin, "https://todo.test:") {
		t.Errorf("service origin %q has no explicit port", m.Service.Origin)
	}
	branches := map[string]string{}
	for _, u := range m.Users {
		branches[u.Email] = u.Branch + " " + u.Error
	}
	want := map[string]string{
		sandbox.UserEnterprise: "enterprise ", sandbox.UserStrict: "enterprise ", sandbox.UserNoRecord: "service_or_federated ",
		sandbox.UserNone: "refused 403 delegation_disabled", sandbox.UserBroken: "refused 502 discovery_failed",
	}
	if diff := cmp.Diff(want, branches); diff != "" {
		t.Errorf("users' branches (-want +got):\n%s", diff)
	}

	// An outside tool: only the manifest's DNS server and CA file.
	dev, err := devnetclient.Load(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if dev.Manifest.Service.Origin != m.Service.Origin || !dev.InsecureAllowPrivateNetworks {
		t.Errorf("devnetclient: manifest %+v, private networks %v", dev.Manifest.Service, dev.InsecureAllowPrivateNetworks)
	}
	client := dev.HTTPClient
	resp, err := client.Get(m.Service.ConfigurationURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), m.Service.Origin) {
		t.Errorf("GET %s = %d %s", m.Service.ConfigurationURL, resp.StatusCode, body)
	}
	// Every Authority advertises the mission extension with its endpoints.
	for _, a := range m.Authorities {
		resp, err := client.Get(a.ConfigurationURL)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var cfg pass.AuthorityConfiguration
		if err := pass.Decode(raw, &cfg); err != nil {
			t.Fatalf("%s: %v", a.ConfigurationURL, err)
		}
		for _, ep := range []string{"mission", "mission_complete", "mission_report"} {
			if u := cfg.Extensions.Endpoint(pass.ExtMission, ep); !strings.HasPrefix(u, a.Identifier+"/") {
				t.Errorf("%s advertises mission endpoint %s = %q", a.Name, ep, u)
			}
		}
	}
	admin := m.Authorities[0].AdminAPI + "pending"
	for token, wantStatus := range map[string]int{"": 401, "wrong": 401, "tok-1234": 200} {
		req, _ := http.NewRequest("GET", admin, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != wantStatus {
			t.Errorf("GET %s with token %q = %d, want %d", admin, token, resp.StatusCode, wantStatus)
		}
	}
	resp, err = client.Get(m.Authorities[0].ApprovalPage)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("approval page = %d", resp.StatusCode)
	}

	// Close stops every server.
	d.Close()
	closed = true
	if c, err := net.DialTimeout("tcp", m.Hosts[sandbox.TodoHost], time.Second); err == nil {
		c.Close()
		t.Error("todo.test still accepts connections after Close")
	}
}

func TestHostAddrs(t *testing.T) {
	tests := []struct {
		name, spec string
		want       map[string]string
		wantErr    bool
	}{
		{"default", "", map[string]string{}, false},
		{"base", "8443", map[string]string{"todo.test": "127.0.0.1:8443", "idp.corp.test": "127.0.0.1:8444", "approvals.test": "127.0.0.1:8445", "broken.test": "127.0.0.1:8446"}, false},
		{"per host", "todo.test=9000, idp.corp.test=9001", map[string]string{"todo.test": "127.0.0.1:9000", "idp.corp.test": "127.0.0.1:9001"}, false},
		{"unknown host", "evil.test=1", nil, true},
		{"bad base", "x", nil, true},
		{"too high", "65535", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hostAddrs(tt.spec)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); !tt.wantErr && diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFlags(t *testing.T) {
	if code := run([]string{"-nope"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
	if code := run([]string{"-port", "todo.test"}, io.Discard, io.Discard); code != 1 {
		t.Errorf("bad -port: exit %d, want 1", code)
	}
}
