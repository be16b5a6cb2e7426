// Package browser opens an AgentPass browser session in a real Chromium,
// driven through the DevTools protocol with chromedp.
//
// # Overview
//
// [Open] takes the initialization that harness.Client.RedeemBrowserSession
// returns, loads it once in a fresh headless Chromium, and returns the
// [Session] on the destination page, logged in, for the agent to drive with
// chromedp actions. A failure is returned, never retried: acquire a new
// pass.
//
// # Usage
//
//	init, err := client.RedeemBrowserSession(ctx, grant, harness.RedeemOptions{})
//	sess, err := browser.Open(ctx, init, browser.Options{})
//	if err != nil {
//		// errors.Is(err, browser.ErrInitializationFailed): acquire a new pass
//	}
//	defer sess.Close()
//	title, err := chromedp.Run(sess.Context(), chromedp.Title())
//
// The browser has a throwaway profile (removed by Close). Options.Hosts and
// Options.InsecureTrustedSPKI exist for loopback test networks and
// development only.
//
// # Why one load
//
// The initialization is a one-time request that, loaded in a browser, makes
// the Service set a session cookie and redirect to the destination page.
// Whoever loads it first gets the User's session, so the spec requires the
// Harness to load it directly in the emulated browser, exactly once, never
// prefetching, retrying or sharing it (§3.3.2). Open does exactly that.
//
// For the hardening draft's form POST (the secret is not in the URL), the
// form is built inside the browser with DOM calls (never HTML text), so no
// value can inject markup, and submitted from about:blank; for a plain v0.1
// GET URL the browser navigates to it. Either way there is one request, and
// a failure is returned, never retried: a used or expired initialization
// cannot succeed again, and each extra load is one more place the secret
// travels.
//
// Package harness does not import this package, so agents that only use
// bearer tokens do not depend on chromedp.
package browser

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/pass"
)

// defaultTimeout bounds loading the initialization when Options.Timeout is
// zero.
const defaultTimeout = 30 * time.Second

// Errors.
var (
	// ErrInitializationFailed: the Service did not accept the
	// initialization (an error page such as 404 unknown or 410 already
	// used or expired), or the browser could not load it. The error is an
	// [*InitializationError]. Do not retry: the initialization is single
	// use, so acquire a new pass.
	ErrInitializationFailed = errors.New("browser: initialization failed")
	// ErrInvalidInitialization: the initialization cannot be loaded safely
	// (not https, an unknown method). Nothing was loaded.
	ErrInvalidInitialization = errors.New("browser: invalid initialization")
)

// InitializationError is a failed initialization load.
type InitializationError struct {
	// Status is the HTTP status of the page the browser ended on, or 0
	// when no answer was received.
	Status int
	// URL is the page the browser ended on (never the initialization URL,
	// which may hold the secret).
	URL string
	// Err is the browser's error, when the load itself failed.
	Err error
}

func (e *InitializationError) Error() string {
	s := "browser: initialization failed"
	if e.Status != 0 {
		s += fmt.Sprintf(": status %d", e.Status)
	}
	if e.URL != "" {
		s += " at " + e.URL
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrInitializationFailed and the cause.
func (e *InitializationError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrInitializationFailed}
	}
	return []error{ErrInitializationFailed, e.Err}
}

// Options configure the browser. The zero value starts a headless Chromium
// found on the PATH with a fresh profile.
type Options struct {
	// ExecPath is the Chromium (or Chrome) executable. If empty, chromedp
	// looks for chromium, chrome and google-chrome on the PATH and in the
	// usual install locations.
	ExecPath string

	// Headed shows the browser window. By default it is headless.
	Headed bool

	// Timeout bounds the initialization load (the form POST or GET and the
	// redirect to the destination). If zero, 30 seconds.
	Timeout time.Duration

	// Hosts maps host names to loopback addresses ("todo.test" ->
	// "127.0.0.1:41234") with Chromium's --host-resolver-rules, so that a
	// host reached on port 443 goes to that address, for test networks
	// whose servers listen on loopback ports. A key with a port
	// ("todo.test:8443") maps that port instead, for origins with explicit
	// ports. Every other name then fails to resolve, so a test browser
	// cannot wander onto the Internet.
	Hosts map[string]string

	// InsecureTrustedSPKI lists base64 SHA-256 hashes of certificate
	// public keys (see SPKIHash) that Chromium accepts even though their
	// certificate chains to no trusted root
	// (--ignore-certificate-errors-spki-list). Chromium reads no custom CA
	// from a flag, so this is how a test network's throwaway certificates
	// are accepted; only those keys are, every other certificate is still
	// verified. For tests and development networks only.
	InsecureTrustedSPKI []string

	// Flags are extra Chromium command-line flags (name without "--" to
	// value: true for a bare switch, false to remove a default).
	Flags map[string]any
}

// SPKIHash returns the base64 SHA-256 of a certificate's
// SubjectPublicKeyInfo, the form InsecureTrustedSPKI takes.
func SPKIHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Session is a Chromium browser with one tab. It is safe for concurrent use
// as chromedp contexts are.
type Session struct {
	tab         context.Context
	cancelTab   context.CancelFunc
	cancelAlloc context.CancelFunc
	timeout     time.Duration

	mu     sync.Mutex
	url    string
	status int
	loaded bool
}

// Open starts a browser, takes the initialization (so it cannot be used
// again, harness.Initialization.Take) and loads it once. On success the
// browser is on the destination page with the Service's session; on failure
// the browser is closed and the error matches ErrInitializationFailed.
// ctx bounds the start and the load; the browser lives until Close.
func Open(ctx context.Context, init *harness.Initialization, opts Options) (*Session, error) {
	if init == nil {
		return nil, fmt.Errorf("%w: nil initialization", ErrInvalidInitialization)
	}
	req, err := init.Take()
	if err != nil {
		return nil, err
	}
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	s, err := Launch(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := s.Load(ctx, req); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Launch starts a browser on about:blank. Most callers use Open; Launch and
// Load are for a browser that already exists or an initialization request
// obtained elsewhere.
func Launch(ctx context.Context, opts Options) (*Session, error) {
	flags, err := allocatorOptions(opts)
	if err != nil {
		return nil, err
	}
	// The browser outlives ctx (which bounds only the start): Close ends it.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.WithoutCancel(ctx), flags...)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	s := &Session{tab: tab, cancelTab: cancelTab, cancelAlloc: cancelAlloc, timeout: opts.Timeout}
	if s.timeout == 0 {
		s.timeout = defaultTimeout
	}
	start := make(chan error, 1)
	go func() { start <- chromedp.Do(tab, chromedp.Navigate("about:blank")) }()
	select {
	case err = <-start:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("browser: starting Chromium: %w", err)
	}
	return s, nil
}

func allocatorOptions(opts Options) ([]chromedp.ExecAllocatorOption, error) {
	o := slices.Clone(chromedp.DefaultExecAllocatorOptions[:])
	o = append(o,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-proxy-server", true), // a library reads no proxy settings from the environment
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("dns-prefetch-disable", true),
		// Never fetch pages speculatively: an initialization is single-use.
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,Prerender2,NoStatePrefetch,PreloadingHeuristics,SpeculationRulesPrefetchFuture"),
	)
	if opts.ExecPath != "" {
		o = append(o, chromedp.ExecPath(opts.ExecPath))
	}
	if opts.Headed {
		o = append(o, chromedp.Flag("headless", false), chromedp.Flag("hide-scrollbars", false), chromedp.Flag("mute-audio", false))
	}
	if len(opts.Hosts) > 0 {
		rules, err := resolverRules(opts.Hosts)
		if err != nil {
			return nil, err
		}
		o = append(o, chromedp.Flag("host-resolver-rules", rules))
	}
	if len(opts.InsecureTrustedSPKI) > 0 {
		for _, h := range opts.InsecureTrustedSPKI {
			if b, err := base64.StdEncoding.DecodeString(h); err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("browser: Options.InsecureTrustedSPKI entry %q is not a base64 SHA-256", h)
			}
		}
		o = append(o, chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(opts.InsecureTrustedSPKI, ",")))
	}
	for name, v := range opts.Flags {
		o = append(o, chromedp.Flag(name, v))
	}
	return o, nil
}

func checkRequest(req harness.InitRequest) error {
	if err := pass.CheckHTTPSURL(req.URL); err != nil {
		return fmt.Errorf("%w: initialization URL is not https", ErrInvalidInitialization)
	}
	switch req.Method {
	case http.MethodGet:
	case http.MethodPost:
		if len(req.FormFields) == 0 {
			return fmt.Errorf("%w: a POST initialization without form fields", ErrInvalidInitialization)
		}
	default:
		return fmt.Errorf("%w: method %q", ErrInvalidInitialization, req.Method)
	}
	return nil
}

// submitScript builds and submits a form with DOM calls. action and fields
// are JSON literals (valid JavaScript string and object literals), so no
// value is ever parsed as markup or code.
const submitScript = `(() => {
	const f = document.createElement("form");
	f.method = "POST";
	f.action = %s;
	f.enctype = "application/x-www-form-urlencoded";
	for (const [k, v] of Object.entries(%s)) {
		const i = document.createElement("input");
		i.type = "hidden";
		i.name = k;
		i.value = v;
		f.appendChild(i);
	}
	(document.body || document.documentElement).appendChild(f);
	f.submit();
})()`

// Load loads an initialization request in the session's tab, once: a GET
// navigation, or a form POST submitted from about:blank. It waits until the
// page the Service redirects to has loaded. A page answered with a 4xx or
// 5xx status, or a failed load, is an *InitializationError; Load never
// retries.
func (s *Session) Load(ctx context.Context, req harness.InitRequest) error {
	if err := checkRequest(req); err != nil {
		return err
	}
	s.mu.Lock()
	if s.loaded {
		s.mu.Unlock()
		return fmt.Errorf("%w: this session already loaded an initialization", ErrInvalidInitialization)
	}
	s.loaded = true
	s.mu.Unlock()

	tab, cancel := context.WithTimeout(s.tab, s.timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()

	var action chromedp.Action[chromedp.Void]
	if req.Method == http.MethodGet {
		action = chromedp.Navigate(req.URL)
	} else {
		if err := chromedp.Do(tab, chromedp.Navigate("about:blank")); err != nil {
			return &InitializationError{Err: err}
		}
		u, _ := json.Marshal(req.URL)
		fields, _ := json.Marshal(req.FormFields)
		action = chromedp.Evaluate[chromedp.Void](fmt.Sprintf(submitScript, u, fields))
	}
	resp, err := chromedp.RunResponse(tab, action)
	var loc string
	if err == nil || resp != nil {
		loc, _ = chromedp.Run(s.tab, chromedp.Location())
	}
	s.mu.Lock()
	s.url = loc
	if resp != nil {
		s.status = int(resp.Status)
	}
	status := s.status
	s.mu.Unlock()
	switch {
	case err != nil:
		return &InitializationError{Status: status, URL: safeURL(loc), Err: err}
	case resp == nil:
		return &InitializationError{URL: safeURL(loc), Err: errors.New("no document loaded")}
	case status >= 400:
		return &InitializationError{Status: status, URL: safeURL(loc)}
	}
	return nil
}

// safeURL drops the query of a URL the browser ended on, in case it is
// still the initialization URL with its secret.
func safeURL(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}

// Context returns the chromedp context of the session's tab, for
// chromedp.Run.
func (s *Session) Context() context.Context { return s.tab }

// URL returns the URL of the page the initialization ended on (the
// destination).
func (s *Session) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Status returns the HTTP status of that page's document.
func (s *Session) Status() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Close stops the browser and removes its profile.
func (s *Session) Close() error {
	s.cancelTab()
	s.cancelAlloc()
	return nil
}

// resolverRules builds Chromium's --host-resolver-rules from Options.Hosts:
// each host (on port 443 unless its key names a port) maps to its address,
// and every other name fails to resolve.
func resolverRules(hosts map[string]string) (string, error) {
	rules := make([]string, 0, len(hosts)+1)
	for host, addr := range hosts {
		if strings.ContainsAny(host, " ,") || host == "" {
			return "", fmt.Errorf("browser: invalid host %q in Options.Hosts", host)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil || strings.ContainsAny(addr, " ,") {
			return "", fmt.Errorf("browser: invalid address %q for %s in Options.Hosts", addr, host)
		}
		if _, _, err := net.SplitHostPort(host); err != nil {
			host += ":443"
		}
		rules = append(rules, "MAP "+host+" "+addr)
	}
	slices.Sort(rules)
	rules = append(rules, "MAP * ~NOTFOUND")
	return strings.Join(rules, ", "), nil
}
