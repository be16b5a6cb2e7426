package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/pass/conformance"
)

// conformance runs the conformance kit against a Service and/or an
// Authority and prints the summary table (or -json); the exit status is 1
// when a check failed.
func (c *cli) conformance(ctx context.Context, args []string) error {
	fs := c.flags("conformance")
	var (
		cfg                       conformance.Config
		adminAPI, adminToken      string
		prompt                    bool
		htmlFile, only, schemaDir string
		kits                      listFlag
		approvalTimeout           time.Duration
	)
	fs.StringVar(&cfg.User, "user", "", "")
	fs.StringVar(&cfg.ServiceConfigURL, "service-config", "", "")
	fs.StringVar(&cfg.AuthorityConfigURL, "authority-config", "", "")
	fs.StringVar(&cfg.AuthorityID, "authority", "", "")
	fs.StringVar(&cfg.ServiceAPI, "api", "", "")
	fs.StringVar(&cfg.DisabledUser, "user-none", "", "")
	fs.StringVar(&cfg.BrokenUser, "user-broken", "", "")
	fs.StringVar(&adminAPI, "admin-api", "", "")
	fs.StringVar(&adminToken, "admin-token", "", "")
	fs.BoolVar(&prompt, "prompt", false, "")
	fs.StringVar(&htmlFile, "html", "", "")
	fs.StringVar(&only, "only", "", "")
	fs.StringVar(&schemaDir, "schemas", "", "")
	fs.Var(&kits, "kit", "")
	fs.DurationVar(&approvalTimeout, "approval-timeout", 2*time.Minute, "")
	pos, err := parse(fs, args)
	if err != nil {
		return &usageError{err.Error()}
	}
	switch len(pos) {
	case 0:
	case 1:
		cfg.ServiceOrigin = pos[0]
	default:
		return &usageError{"conformance takes at most one Service origin"}
	}
	if cfg.User == "" {
		return &usageError{"conformance needs -user EMAIL (the test user)"}
	}
	if err := c.setup(); err != nil {
		return err
	}
	cfg.HTTPClient, cfg.Discovery = c.client, c.disc
	cfg.InsecureAllowPrivateNetworks = c.dns != ""
	cfg.HarnessID = c.harnessID
	cfg.SchemaDir = schemaDir
	cfg.ApprovalTimeout = approvalTimeout
	if only != "" {
		cfg.Only = strings.Split(only, ",")
	}
	switch {
	case adminToken != "":
		cfg.Approver = &adminApprover{client: c.client, base: adminAPI, token: adminToken}
	case prompt:
		cfg.Approver = &promptApprover{in: bufio.NewReader(os.Stdin), out: c.stderr}
	}
	if len(kits) > 0 {
		stop, kit, err := serveKit(kits)
		if err != nil {
			return &usageError{err.Error()}
		}
		defer stop()
		cfg.KitService = kit
	}
	if !c.json {
		cfg.Progress = func(r conformance.Result) { fmt.Fprintln(c.stderr, conformance.ProgressLine(r)) }
	}
	rep, err := conformance.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if htmlFile != "" {
		f, err := os.OpenFile(htmlFile, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		werr := rep.WriteHTML(f)
		if err := errors.Join(werr, f.Close()); err != nil {
			return err
		}
	}
	if c.json {
		_ = rep.WriteJSON(c.stdout)
	} else {
		_ = rep.WriteText(c.stdout)
	}
	if rep.Failed() {
		return errReported
	}
	return nil
}

// listFlag is a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// serveKit serves the kit's Service on each -kit origin,cert,key,listen.
func serveKit(specs []string) (stop func(), kit *conformance.KitService, err error) {
	var origins []string
	type site struct{ cert, key, addr string }
	var sites []site
	for _, s := range specs {
		p := strings.Split(s, ",")
		if len(p) != 4 {
			return nil, nil, fmt.Errorf("-kit %q: want origin,cert.pem,key.pem,listen-address", s)
		}
		origins = append(origins, p[0])
		sites = append(sites, site{p[1], p[2], p[3]})
	}
	if kit, err = conformance.NewKitService(origins...); err != nil {
		return nil, nil, err
	}
	var servers []*http.Server
	stop = func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}
	for _, st := range sites {
		cert, err := tls.LoadX509KeyPair(st.cert, st.key)
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("-kit: %w", err)
		}
		ln, err := net.Listen("tcp", st.addr)
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("-kit: %w", err)
		}
		srv := &http.Server{Handler: kit, ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
		servers = append(servers, srv)
		go func() { _ = srv.ServeTLS(ln, "", "") }()
	}
	return stop, kit, nil
}

// adminApprover decides through the devnet approval pages' admin API
// ({identifier}/approvals/api/ unless -admin-api names another base),
// finding the request by its task description, unique in a run.
type adminApprover struct {
	client *http.Client
	base   string
	token  string
}

func (a *adminApprover) url(p conformance.Pending, path string) string {
	base := a.base
	if base == "" {
		base = strings.TrimSuffix(p.Authority, "/") + "/approvals/api/"
	}
	return strings.TrimSuffix(base, "/") + "/" + path
}

func (a *adminApprover) call(ctx context.Context, method, u string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin API %s: %s", u, resp.Status)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (a *adminApprover) Approve(ctx context.Context, p conformance.Pending) error {
	var list struct {
		Pending []struct {
			ID   string `json:"id"`
			Task string `json:"task"`
		} `json:"pending"`
	}
	if err := a.call(ctx, http.MethodGet, a.url(p, "pending"), nil, &list); err != nil {
		return err
	}
	for _, r := range list.Pending {
		if r.Task == p.Task || (p.MissionID != "" && r.ID == p.MissionID) {
			return a.call(ctx, http.MethodPost, a.url(p, "decide"), map[string]any{"id": r.ID, "outcome": "approve"}, nil)
		}
	}
	return errors.New("the request is not among the admin API's pending requests")
}

func (a *adminApprover) Revoke(ctx context.Context, p conformance.Pending) error {
	var list struct {
		Authorizations []struct {
			ID        string `json:"id"`
			RequestID string `json:"request_id"`
			Task      string `json:"task"`
		} `json:"authorizations"`
	}
	if err := a.call(ctx, http.MethodGet, a.url(p, "authorizations"), nil, &list); err != nil {
		return err
	}
	for _, z := range list.Authorizations {
		if z.Task == p.Task || (p.MissionID != "" && z.RequestID == p.MissionID) {
			return a.call(ctx, http.MethodPost, a.url(p, "revoke"), map[string]any{"id": z.ID, "reason": "conformance check"}, nil)
		}
	}
	return errors.New("no live authorization for the request in the admin API")
}

// Suspend and Resume act on the mission through the admin API, so the kit
// can check a suspended mission's answers.
func (a *adminApprover) Suspend(ctx context.Context, p conformance.Pending) error {
	return a.suspension(ctx, p, "suspend")
}

func (a *adminApprover) Resume(ctx context.Context, p conformance.Pending) error {
	return a.suspension(ctx, p, "resume")
}

func (a *adminApprover) suspension(ctx context.Context, p conformance.Pending, op string) error {
	if p.MissionID == "" {
		return errors.ErrUnsupported
	}
	return a.call(ctx, http.MethodPost, a.url(p, op), map[string]any{"id": p.MissionID, "by": "agentpass-conformance", "reason": "conformance check"}, nil)
}

// promptApprover asks the person running the kit.
type promptApprover struct {
	in  *bufio.Reader
	out io.Writer
}

func (a *promptApprover) Approve(ctx context.Context, p conformance.Pending) error {
	where := p.ApprovalURL
	if where == "" {
		where = "the approval page of " + p.Authority
	}
	fmt.Fprintf(a.out, "· approve %q for %s at %s (the kit waits)\n", p.Task, p.User, where)
	return nil
}

func (a *promptApprover) Revoke(ctx context.Context, p conformance.Pending) error {
	fmt.Fprintf(a.out, "· revoke the delegation of %q at %s, then press Enter: ", p.Task, p.Authority)
	_, err := a.in.ReadString('\n')
	return err
}
