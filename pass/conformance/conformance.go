package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/internal/outbound"
	"github.com/agentpass-go/agentpass/pass"
)

// Config says what to check and how to act as the other parties.
type Config struct {
	// ServiceOrigin is a Service to check, found through its
	// _agentpass-service TXT record. ServiceConfigURL skips the DNS step.
	// With neither, no Service checks run.
	ServiceOrigin    string
	ServiceConfigURL string

	// AuthorityConfigURL is an Authority to check. AuthorityID names one
	// instead: its configuration is found through the test user's
	// enterprise record or the Service's resolution answer. With neither,
	// the Authority the Service names for User is checked too.
	AuthorityConfigURL string
	AuthorityID        string

	// User is the test user's e-mail address. Required.
	User string

	// DisabledUser and BrokenUser are optional test users: one whose e-mail
	// domain publishes "none", one whose domain's record points at an
	// unusable Authority configuration. The Service must refuse both
	// without naming any Authority.
	DisabledUser, BrokenUser string

	// HarnessID is the harness.id the kit sends. If empty,
	// "agentpass-conformance".
	HarnessID string

	// Approver decides requests an Authority leaves pending. If nil, only
	// requests the Authority approves by itself are used, and the checks
	// needing a pass skip otherwise.
	Approver Approver

	// ServiceAPI is a URL of the Service's API that accepts the bearer
	// tokens it issues (GET). With it and an Approver that can revoke,
	// the kit checks that a revocation reaches the Service.
	ServiceAPI string

	// RevocationWait bounds how long the kit waits for a revocation to
	// reach the Service. If zero, 30 s.
	RevocationWait time.Duration

	// KitService is the kit's own Service, which it needs to call an
	// Authority's validation and authorization-check endpoints: the
	// Authority must be able to discover it (see NewKitService). If nil,
	// those checks skip.
	KitService *KitService

	// HTTPClient reaches the targets; nil means the default transport.
	// Its transport gets the module's outbound policy: verified TLS 1.2 or
	// newer, no redirects followed.
	HTTPClient *http.Client

	// Discovery finds the Service by DNS and fetches Authority
	// configurations. If nil, one is made on HTTPClient with the system's
	// nameservers.
	Discovery *discovery.Client

	// InsecureAllowPrivateNetworks lets the kit reach loopback and private
	// addresses, as a development network needs.
	InsecureAllowPrivateNetworks bool

	// SchemaDir is a folder holding the v0.1 *.schema.json files. If
	// empty, the copy embedded in the kit.
	SchemaDir string

	// ApprovalTimeout bounds the wait for one decision. If zero, 2 min.
	ApprovalTimeout time.Duration

	// Only, when not empty, limits the run to checks whose requirement ID
	// starts with one of its entries ("A-VAL", "HB-7"); the discovery
	// checks the others depend on always run.
	Only []string

	// Progress, when set, receives each result as soon as it is known.
	Progress func(Result)
}

// Approver decides issuance requests on the kit's behalf, as a person or an
// operator tool would.
type Approver interface {
	// Approve makes the Authority approve the pending request p, or
	// returns once a person was asked (the kit then polls the status).
	Approve(ctx context.Context, p Pending) error
	// Revoke revokes the delegation made from request p. An Approver that
	// cannot returns an error matching errors.ErrUnsupported.
	Revoke(ctx context.Context, p Pending) error
}

// Suspender is an Approver that can also suspend and resume a mission, as
// an operator can. With one, the kit checks what a suspended mission's
// authorization check answers (mission extension); a Suspend or Resume
// that cannot returns an error matching errors.ErrUnsupported.
type Suspender interface {
	Suspend(ctx context.Context, p Pending) error
	Resume(ctx context.Context, p Pending) error
}

// Pending describes a request the kit made.
type Pending struct {
	Authority   string // Authority identifier
	RequestID   string // issuance request id (the status id)
	MissionID   string // mission id, when the Authority advertises missions
	User        string
	Task        string // task.description: unique per request of a run
	ApprovalURL string // links.approval, when the Authority gives one
}

// Run runs every check that applies to the configured targets and returns
// the report. It fails only when the configuration is unusable; failing
// checks are in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	r, err := newRunner(cfg)
	if err != nil {
		return nil, err
	}
	return r.run(ctx), nil
}

const (
	maxBody          = 256 << 10
	defaultHarnessID = "agentpass-conformance"
)

type runner struct {
	cfg    Config
	client *http.Client
	disc   *discovery.Client
	sch    *schemas
	runID  string
	seq    int

	report  Report
	secrets secretSet

	// Established while running.
	svc           *serviceTarget
	svcAuth       *authorityTarget // the Authority the Service names for User
	auth          *authorityTarget // the Authority under test
	lastValidated *validated
	// setReceiver is the Service's SET receiver, whose errors follow
	// RFC 8935 rather than the AgentPass error document.
	setReceiver string
	grantMu     sync.Mutex
}

func newRunner(cfg Config) (*runner, error) {
	if cfg.User == "" {
		return nil, errors.New("conformance: Config.User is required")
	}
	if _, err := pass.CanonicalEmail(cfg.User); err != nil {
		return nil, fmt.Errorf("conformance: Config.User: %w", err)
	}
	if cfg.ServiceOrigin == "" && cfg.ServiceConfigURL == "" && cfg.AuthorityConfigURL == "" && cfg.AuthorityID == "" {
		return nil, errors.New("conformance: no target: set a Service or an Authority")
	}
	if cfg.HarnessID == "" {
		cfg.HarnessID = defaultHarnessID
	}
	if cfg.RevocationWait <= 0 {
		cfg.RevocationWait = 30 * time.Second
	}
	if cfg.ApprovalTimeout <= 0 {
		cfg.ApprovalTimeout = 2 * time.Minute
	}
	client, err := outbound.New(outbound.Policy{Role: "conformance", Client: cfg.HTTPClient,
		AllowPrivateNetworks: cfg.InsecureAllowPrivateNetworks, Timeout: 15 * time.Second})
	if err != nil {
		return nil, err
	}
	disc := cfg.Discovery
	if disc == nil {
		if disc, err = discovery.New(discovery.Config{HTTPClient: cfg.HTTPClient,
			InsecureAllowPrivateNetworks: cfg.InsecureAllowPrivateNetworks}); err != nil {
			return nil, err
		}
	}
	sch := newSchemas(cfg.SchemaDir)
	if sch.err != nil {
		return nil, sch.err
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &runner{cfg: cfg, client: client, disc: disc, sch: sch, runID: hex.EncodeToString(b)}, nil
}

// answer is a response as a check sees it.
type answer struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (a *answer) ok() bool { return a.err == nil && a.status >= 200 && a.status < 300 }

// refused reports a 4xx answer: a refusal that is the client's fault.
func (a *answer) refused() bool { return a.err == nil && a.status >= 400 && a.status < 500 }

func (a *answer) String() string {
	if a.err != nil {
		return "error: " + a.err.Error()
	}
	return strconv.Itoa(a.status) + " " + oneLine(string(a.body), 300)
}

// errorCode returns the wire error code of an error answer, or "".
func (a *answer) errorCode() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(a.body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

func (a *answer) json(v any) error {
	if a.err != nil {
		return a.err
	}
	return json.Unmarshal(a.body, v)
}

// send makes one request and records it in c. body is JSON-encoded unless
// it is a []byte (sent as is) or nil. A 429 is retried after its
// Retry-After (at most three times, each wait at most 5 s), so a rate
// limit never passes for a refusal of the input.
func (r *runner) send(ctx context.Context, c *check, method, url string, hdr http.Header, body any) *answer {
	return r.sendTries(ctx, c, method, url, hdr, body, 3)
}

// sendOnce is send without the 429 retries, for a request carrying a
// single-use proof (a resend would be refused as a replay) or one whose
// expected answer is a 429.
func (r *runner) sendOnce(ctx context.Context, c *check, method, url string, hdr http.Header, body any) *answer {
	return r.sendTries(ctx, c, method, url, hdr, body, 0)
}

func (r *runner) sendTries(ctx context.Context, c *check, method, url string, hdr http.Header, body any, retries int) *answer {
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			return &answer{err: err}
		}
	}
	var a *answer
	for attempt := 0; ; attempt++ {
		a = r.roundTrip(ctx, method, url, hdr, raw)
		if a.err != nil || a.status != http.StatusTooManyRequests || attempt >= retries {
			break
		}
		wait := time.Second
		if s, err := strconv.Atoi(a.header.Get("Retry-After")); err == nil && s > 0 {
			wait = time.Duration(s) * time.Second
		}
		t := time.NewTimer(min(wait, 5*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return &answer{err: ctx.Err()}
		case <-t.C:
		}
	}
	if a.err == nil {
		r.learnSecrets(a.body)
	}
	if c != nil {
		x := Exchange{Method: method, URL: r.secrets.redact(url), Request: oneLine(r.secrets.redact(string(raw)), 4000), Status: a.status}
		if a.err != nil {
			x.Error = r.secrets.redact(a.err.Error())
		} else {
			resp := string(a.body)
			if a.status >= 300 && a.status < 400 {
				resp = "Location: " + a.header.Get("Location") + " " + resp
			}
			x.Response = r.secrets.redact(oneLine(resp, 2000))
		}
		c.res.Exchanges = append(c.res.Exchanges, x)
	}
	return a
}

func (r *runner) roundTrip(ctx context.Context, method, url string, hdr http.Header, raw []byte) *answer {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var rd io.Reader
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return &answer{err: err}
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return &answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return &answer{err: err}
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// learnSecrets registers the secrets a target hands out in body (a pass,
// a bearer token, an initialization URL and its form fields) before the
// answer is recorded, so no report ever holds them.
func (r *runner) learnSecrets(body []byte) {
	var doc struct {
		AgentPass *struct {
			Value string `json:"value"`
		} `json:"agentpass"`
		// An issuance status's id makes its status URL, which serves
		// the pass to anyone holding it.
		ID                string `json:"id"`
		Status            string `json:"status"`
		BearerToken       string `json:"bearer_token"`
		InitializationURL string `json:"initialization_url"`
		InitRequest       *struct {
			FormFields map[string]string `json:"form_fields"`
		} `json:"initialization_request"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return
	}
	if doc.AgentPass != nil {
		r.secrets.add(doc.AgentPass.Value)
	}
	r.secrets.add(doc.BearerToken)
	if doc.ID != "" && doc.Status != "" {
		r.secrets.add(doc.ID)
	}
	if doc.InitRequest != nil {
		for _, v := range doc.InitRequest.FormFields {
			r.secrets.add(v)
		}
	}
	if doc.InitializationURL != "" {
		r.secrets.add(doc.InitializationURL)
		if u, err := url.Parse(doc.InitializationURL); err == nil {
			for _, vs := range u.Query() {
				for _, v := range vs {
					r.secrets.add(v)
				}
			}
			if i := strings.LastIndex(u.Path, "/"); i >= 0 {
				r.secrets.add(u.Path[i+1:])
			}
		}
	}
}

// secretSet redacts values that must never appear in a report: passes,
// tokens and initialization URLs the targets hand out.
type secretSet struct {
	mu sync.Mutex
	s  []string
}

func (s *secretSet) add(v string) {
	if len(v) < 8 {
		return
	}
	s.mu.Lock()
	s.s = append(s.s, v)
	s.mu.Unlock()
}

var jwtRE = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*`)

func (s *secretSet) redact(v string) string {
	s.mu.Lock()
	for _, x := range s.s {
		v = strings.ReplaceAll(v, x, "[redacted]")
	}
	s.mu.Unlock()
	return jwtRE.ReplaceAllStringFunc(v, func(t string) string {
		h, _, _ := strings.Cut(t, ".")
		b, err := base64.RawURLEncoding.DecodeString(h)
		if err != nil {
			return "[jwt]"
		}
		return "[jwt header " + string(b) + "]"
	})
}
