package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/browser"
	"github.com/agentpass-go/agentpass/pass"
)

// discoverOutput is the -json output of discover.
type discoverOutput struct {
	Service struct {
		Origin           string                     `json:"origin"`
		ConfigurationURL string                     `json:"configuration_url"`
		Configuration    *pass.ServiceConfiguration `json:"configuration"`
	} `json:"service"`
	Resolution *resolutionOutput `json:"resolution,omitempty"`
}

type resolutionOutput struct {
	User        string            `json:"user"`
	Branch      string            `json:"branch,omitempty"`
	Authorities []authorityOutput `json:"authorities,omitempty"`
	Error       map[string]any    `json:"error,omitempty"`
}

type authorityOutput struct {
	Authority        string `json:"authority"`
	ConfigurationURL string `json:"configuration_url"`
	TrustMode        string `json:"trust_mode,omitempty"`
	Error            string `json:"error,omitempty"`
}

func (c *cli) discover(ctx context.Context, args []string) error {
	pos, err := parse(c.flags("discover"), args)
	if err != nil {
		return &usageError{err.Error()}
	}
	if len(pos) < 1 || len(pos) > 2 {
		return &usageError{"discover needs <service-origin> [email]"}
	}
	if err := c.setup(); err != nil {
		return err
	}
	info, err := c.disc.DiscoverService(ctx, pos[0])
	if err != nil {
		return err
	}
	var out discoverOutput
	out.Service.Origin = info.Configuration.Service.Origin
	out.Service.ConfigurationURL = info.ConfigurationURL
	out.Service.Configuration = info.Configuration
	failed := false
	if len(pos) == 2 {
		out.Resolution = c.resolve(ctx, info.Configuration.Service.Origin, pos[1])
		failed = out.Resolution.Error != nil
	}
	if c.json {
		c.printJSON(out)
	} else {
		c.printDiscover(out)
	}
	if failed {
		return errReported
	}
	return nil
}

// resolve asks the Service which Authority governs user (§3.2.2) through
// harness.Client.Resolve, and fetches each Authority's configuration.
func (c *cli) resolve(ctx context.Context, service, user string) *resolutionOutput {
	out := &resolutionOutput{User: user}
	agent, err := c.harness(nil)
	if err != nil {
		out.Error = errorJSON(err)
		return out
	}
	res, err := agent.Resolve(ctx, service, user)
	if err != nil {
		out.Error = errorJSON(err)
		return out
	}
	out.Branch = string(res.Branch)
	refs := res.Options
	for _, r := range refs {
		a := authorityOutput{Authority: r.Authority, ConfigurationURL: r.AuthorityConfigurationURL}
		if ac, err := c.disc.AuthorityConfiguration(ctx, r.AuthorityConfigurationURL); err != nil {
			a.Error = err.Error()
		} else {
			a.TrustMode = string(ac.TrustMode)
		}
		out.Authorities = append(out.Authorities, a)
	}
	return out
}

func (c *cli) printDiscover(out discoverOutput) {
	w, cfg := c.stdout, out.Service.Configuration
	fmt.Fprintf(w, "Service        %s", out.Service.Origin)
	if cfg.Service.Name != "" {
		fmt.Fprintf(w, "  (%s)", cfg.Service.Name)
	}
	fmt.Fprintf(w, "\nconfiguration  %s  (AgentPass %s)\n", out.Service.ConfigurationURL, cfg.Version)
	fmt.Fprintf(w, "endpoints\n  resolve_authorities     %s\n  available_scopes        %s\n  redeem_bearer_token     %s\n  redeem_browser_session  %s\n",
		cfg.Endpoints.ResolveAuthorities, cfg.Endpoints.AvailableScopes, cfg.Endpoints.RedeemBearerToken, cfg.Endpoints.RedeemBrowserSession)
	if sa := cfg.Trust.ServiceAuthority; sa != nil {
		fmt.Fprintf(w, "service authority  %s\n", sa.Authority)
	}
	for _, f := range cfg.Trust.TrustedFederatedAuthorities {
		fmt.Fprintf(w, "trusts federated   %s\n", f.Authority)
	}
	r := out.Resolution
	if r == nil {
		return
	}
	fmt.Fprintf(w, "\nresolution for %s: ", r.User)
	if r.Error != nil {
		fmt.Fprintf(w, "refused: %v\n", r.Error["message"])
		return
	}
	fmt.Fprintf(w, "%s\n", r.Branch)
	for _, a := range r.Authorities {
		mode := a.TrustMode
		if a.Error != "" {
			mode = "configuration unusable: " + a.Error
		}
		fmt.Fprintf(w, "  %s  (%s)\n", a.Authority, mode)
	}
}

// tokenOutput is the -json output of token.
type tokenOutput struct {
	Token     string     `json:"token"`
	TokenType string     `json:"token_type"`
	Scope     pass.Scope `json:"scope"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Service   string     `json:"service"`
	Authority string     `json:"authority"`
	Branch    string     `json:"branch"`
	User      string     `json:"user"`
	TaskID    string     `json:"task_id"`
}

// acquireFlags are the flags of token and browser.
type acquireFlags struct {
	task, authority string
	timeout         time.Duration
}

func (c *cli) acquireFlagSet(name string, a *acquireFlags, defaultTask string) *flag.FlagSet {
	fs := c.flags(name)
	fs.StringVar(&a.task, "task", defaultTask, "")
	fs.StringVar(&a.authority, "authority", "", "")
	fs.DurationVar(&a.timeout, "timeout", 15*time.Minute, "")
	return fs
}

func (c *cli) token(ctx context.Context, args []string) error {
	var af acquireFlags
	var scope, pendingPath string
	fs := c.acquireFlagSet("token", &af, "Read my data with the agentpass CLI")
	fs.StringVar(&scope, "scope", "", "")
	fs.StringVar(&pendingPath, "pending", "", "")
	pos, err := parse(fs, args)
	if err != nil {
		return &usageError{err.Error()}
	}
	if len(pos) != 2 {
		return &usageError{"token needs <service-origin> <email>"}
	}
	if pendingPath == "" {
		pendingPath = defaultPendingPath(c.getenv)
	}
	// One saved request at a time per file: overwriting it would orphan a
	// request a person may still approve.
	if _, err := os.Stat(pendingPath); err == nil {
		return fmt.Errorf("a pending request is already saved in %s: resume it with `agentpass wait %s`, or remove the file (or use -pending)", pendingPath, pendingPath)
	}
	if err := c.setup(); err != nil {
		return err
	}
	keys, err := keyStore(pendingPath)
	if err != nil {
		return err
	}
	h, err := c.harness(keys)
	if err != nil {
		return err
	}
	waitCtx, cancel := context.WithTimeout(ctx, af.timeout)
	defer cancel()
	p, err := h.Start(waitCtx, harness.Request{Service: pos[0], User: pos[1], Task: pass.Task{Description: af.task}, Authority: af.authority})
	if err != nil {
		return explain(err)
	}
	f := pendingFile{Pending: p, Scope: scope}
	if err := writePending(pendingPath, f); err != nil {
		_ = h.Cancel(context.WithoutCancel(ctx), p)
		return fmt.Errorf("saving the pending request: %w", err)
	}
	c.mu.Lock()
	fmt.Fprintf(c.stderr, "· saved to %s (Ctrl-C stops waiting; `agentpass wait %s` resumes)\n", pendingPath, pendingPath)
	c.mu.Unlock()
	return c.waitAndRedeem(ctx, waitCtx, h, pendingPath, f)
}

// wait resumes a request saved by token, in this or another process.
func (c *cli) wait(ctx context.Context, args []string) error {
	var timeout time.Duration
	fs := c.flags("wait")
	fs.DurationVar(&timeout, "timeout", 15*time.Minute, "")
	pos, err := parse(fs, args)
	if err != nil {
		return &usageError{err.Error()}
	}
	if len(pos) > 1 {
		return &usageError{"wait takes at most one <pending-file>"}
	}
	path := defaultPendingPath(c.getenv)
	if len(pos) == 1 {
		path = pos[0]
	}
	f, err := readPending(path)
	if err != nil {
		return err
	}
	if err := c.setup(); err != nil {
		return err
	}
	keys, err := keyStore(path)
	if err != nil {
		return err
	}
	c.harnessID = f.Pending.HarnessID // the request is bound to it
	h, err := c.harness(keys)
	if err != nil {
		return err
	}
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.waitAndRedeem(ctx, waitCtx, h, path, f)
}

// printToken prints a redeemed token as token and wait report it.
func (c *cli) printToken(g *harness.Grant, tok *harness.Token) {
	out := tokenOutput{Token: tok.Value(), TokenType: tok.Type, Scope: tok.Scope, Service: tok.Service,
		Authority: g.Authority, Branch: string(g.Branch), User: g.User, TaskID: g.Task.ID}
	if !tok.ExpiresAt.IsZero() {
		t := tok.ExpiresAt.UTC()
		out.ExpiresAt = &t
	}
	if c.json {
		c.printJSON(out)
		return
	}
	w := c.stdout
	fmt.Fprintf(w, "token       %s\ntype        %s\nscope       %s\n", out.Token, out.TokenType, strings.Join(out.Scope, " "))
	if out.ExpiresAt != nil {
		fmt.Fprintf(w, "expires     %s (in %s)\n", out.ExpiresAt.Format(time.RFC3339), time.Until(*out.ExpiresAt).Round(time.Second))
	}
	fmt.Fprintf(w, "service     %s\nauthority   %s (%s)\n\nexport AGENTPASS_TOKEN=%s\n", out.Service, out.Authority, out.Branch, out.Token)
}

// headerList is a repeatable -H flag.
type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

// callOutput is the -json output of call.
type callOutput struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    any               `json:"body"`
}

func (c *cli) call(ctx context.Context, args []string) error {
	var method, data, token string
	var headers headerList
	fs := c.flags("call")
	fs.StringVar(&method, "X", "", "")
	fs.StringVar(&data, "d", "", "")
	fs.StringVar(&token, "token", "", "")
	fs.Var(&headers, "H", "")
	pos, err := parse(fs, args)
	if err != nil {
		return &usageError{err.Error()}
	}
	if len(pos) != 1 {
		return &usageError{"call needs <URL>"}
	}
	if token == "" {
		token = c.getenv("AGENTPASS_TOKEN")
	}
	if token == "" {
		return &usageError{"call needs a token: -token T or AGENTPASS_TOKEN (from `agentpass token`)"}
	}
	u, err := url.Parse(pos[0])
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return &usageError{fmt.Sprintf("%q is not an https URL", pos[0])}
	}
	if method == "" {
		method = http.MethodGet
		if data != "" {
			method = http.MethodPost
		}
	}
	if err := c.setup(); err != nil {
		return err
	}
	tok, err := harness.NewToken(u.Scheme+"://"+u.Host, token, "Bearer", nil, nil)
	if err != nil {
		return err
	}
	var body io.Reader
	if data != "" {
		body = strings.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, strings.ToUpper(method), u.String(), body)
	if err != nil {
		return err
	}
	if data != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return &usageError{fmt.Sprintf("-H %q: want 'Name: value'", h)}
		}
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := tok.HTTPClient(c.client).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if c.json {
		out := callOutput{Status: resp.StatusCode, Headers: map[string]string{}, Body: string(b)}
		for k := range resp.Header {
			out.Headers[k] = resp.Header.Get(k)
		}
		var parsed any
		if jsonErr := json.Unmarshal(b, &parsed); jsonErr == nil {
			out.Body = parsed
		}
		c.printJSON(out)
	} else {
		fmt.Fprintf(c.stderr, "%s %s\n", resp.Proto, resp.Status)
		if wa := resp.Header.Get("WWW-Authenticate"); wa != "" {
			fmt.Fprintf(c.stderr, "WWW-Authenticate: %s\n", wa)
		}
		_, _ = c.stdout.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			fmt.Fprintln(c.stdout)
		}
	}
	if resp.StatusCode >= 400 {
		return errReported
	}
	return nil
}

// browserOutput is the -json output of browser.
type browserOutput struct {
	URL    string `json:"url"`
	Status int    `json:"status"`
	Title  string `json:"title"`
}

func (c *cli) browser(ctx context.Context, args []string) error {
	var af acquireFlags
	var dest, chromium string
	var headless bool
	fs := c.acquireFlagSet("browser", &af, "Open my account in a browser with the agentpass CLI")
	fs.StringVar(&dest, "dest", "", "")
	fs.StringVar(&chromium, "chromium", "", "")
	fs.BoolVar(&headless, "headless", false, "")
	pos, err := parse(fs, args)
	if err != nil {
		return &usageError{err.Error()}
	}
	if len(pos) != 2 {
		return &usageError{"browser needs <service-origin> <email>"}
	}
	if chromium == "" {
		chromium = findChromium(c.getenv)
	}
	if err := c.setup(); err != nil {
		return err
	}
	h, err := c.harness(nil)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, af.timeout)
	defer cancel()
	g, err := h.Acquire(actx, harness.Request{Service: pos[0], User: pos[1], Type: pass.BrowserSession, Destination: dest,
		Task: pass.Task{Description: af.task}, Authority: af.authority})
	if err != nil {
		return explain(err)
	}
	opts, err := c.browserOptions(actx, pos[0])
	if err != nil {
		return err
	}
	opts.ExecPath, opts.Headed = chromium, !headless
	init, err := h.RedeemBrowserSession(actx, g, harness.RedeemOptions{})
	if err != nil {
		return err
	}
	sess, err := browser.Open(actx, init, opts)
	if err != nil {
		return err
	}
	defer sess.Close()
	title, _ := chromedp.Run(sess.Context(), chromedp.Title())
	out := browserOutput{URL: sess.URL(), Status: sess.Status(), Title: title}
	if c.json {
		c.printJSON(out)
	} else {
		fmt.Fprintf(c.stdout, "signed in: %s (%d) %q\n", out.URL, out.Status, out.Title)
	}
	if headless {
		return nil
	}
	fmt.Fprintln(c.stderr, "The browser stays open; Ctrl-C closes it.")
	<-ctx.Done()
	return nil
}

// browserOptions makes Chromium reach the Service the way this tool does:
// the host resolved through -dns, and, with -ca, exactly the Service's
// certificate accepted (Chromium takes no CA file).
func (c *cli) browserOptions(ctx context.Context, origin string) (browser.Options, error) {
	var opts browser.Options
	u, err := url.Parse(origin)
	if err != nil {
		return opts, err
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "443"
	}
	ip := host
	if c.dns != "" {
		addrs, err := c.dev.Resolver.LookupHost(ctx, host)
		if err != nil || len(addrs) == 0 {
			return opts, fmt.Errorf("resolving %s through %s: %w", host, c.dns, err)
		}
		ip = addrs[0]
		opts.Flags = map[string]any{"host-resolver-rules": "MAP " + host + " " + ip}
	}
	if c.ca != "" {
		d := tls.Dialer{Config: &tls.Config{ServerName: host, RootCAs: c.dev.Roots, MinVersion: tls.VersionTLS12}}
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, port))
		if err != nil {
			return opts, fmt.Errorf("checking %s's certificate with -ca: %w", host, err)
		}
		leaf := conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
		conn.Close()
		opts.InsecureTrustedSPKI = []string{browser.SPKIHash(leaf)}
	}
	return opts, nil
}

func findChromium(getenv func(string) string) string {
	if p := getenv("AGENTPASS_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	return ""
}
