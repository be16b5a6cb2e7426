package harness

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

func acquireBearer(t *testing.T, f *fake, c *Client) *Grant {
	t.Helper()
	g, err := c.Acquire(context.Background(), bearerRequest())
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	return g
}

// G-37, H-POLL-7, §3.2.3: 4xx is terminal and never retried; 429 is waited
// out and retried with the same pass; a 5xx or timeout is retried once; a
// 409 after that retry is terminal.
func TestRedemptionRetries(t *testing.T) {
	ok := func(w http.ResponseWriter) {
		writeJSON(w, 200, map[string]any{"bearer_token": bearerTok})
	}
	tests := []struct {
		name       string
		answers    func(w http.ResponseWriter, n int)
		maxWait    time.Duration
		wantPOSTs  int
		wantErr    []error
		wantSleeps []time.Duration
		retried    bool
	}{
		{name: "409 replay is terminal", answers: func(w http.ResponseWriter, n int) { writeErr(w, 409, pass.CodeAgentPassConsumed) },
			wantPOSTs: 1, wantErr: []error{ErrRedemption, pass.ErrConsumed}},
		{name: "401 wrong proof is terminal HB-7", answers: func(w http.ResponseWriter, n int) { writeErr(w, 401, pass.CodeInvalidHarnessProof) },
			wantPOSTs: 1, wantErr: []error{ErrRedemption, pass.ErrUnauthenticated}},
		{name: "403 is terminal", answers: func(w http.ResponseWriter, n int) { writeErr(w, 403, pass.CodePrecedenceViolation) },
			wantPOSTs: 1, wantErr: []error{ErrRedemption, pass.ErrForbidden}},
		{name: "422 is terminal", answers: func(w http.ResponseWriter, n int) { writeErr(w, 422, pass.CodeAgentPassInvalid) },
			wantPOSTs: 1, wantErr: []error{ErrRedemption, pass.ErrUnknown}},
		{name: "redirect is not followed", answers: func(w http.ResponseWriter, n int) {
			w.Header().Set("Location", "https://evil.test/steal")
			w.WriteHeader(http.StatusTemporaryRedirect)
		}, wantPOSTs: 1, wantErr: []error{ErrRedemption}},
		{name: "429 then success", answers: func(w http.ResponseWriter, n int) {
			if n == 1 {
				w.Header().Set("Retry-After", "2")
				writeErr(w, 429, pass.CodeRateLimited)
				return
			}
			ok(w)
		}, wantPOSTs: 2, wantSleeps: []time.Duration{2 * time.Second}},
		{name: "429 asking too long", answers: func(w http.ResponseWriter, n int) {
			w.Header().Set("Retry-After", "120")
			writeErr(w, 429, pass.CodeRateLimited)
		}, wantPOSTs: 1, wantErr: []error{ErrRedemption}},
		{name: "429 forever", answers: func(w http.ResponseWriter, n int) { writeErr(w, 429, pass.CodeRateLimited) },
			wantPOSTs: maxRateLimitWaits + 1, wantErr: []error{ErrRedemption},
			wantSleeps: []time.Duration{time.Second, time.Second, time.Second}},
		{name: "5xx then success", answers: func(w http.ResponseWriter, n int) {
			if n == 1 {
				writeErr(w, 502, pass.CodeAuthorityUnavailable)
				return
			}
			ok(w)
		}, wantPOSTs: 2, wantSleeps: []time.Duration{retry5xxDelay}},
		{name: "5xx then 409 is terminal", answers: func(w http.ResponseWriter, n int) {
			if n == 1 {
				writeErr(w, 500, pass.CodeInternal)
				return
			}
			writeErr(w, 409, pass.CodeAgentPassConsumed)
		}, wantPOSTs: 2, wantErr: []error{ErrRedemption, pass.ErrConsumed}, retried: true, wantSleeps: []time.Duration{retry5xxDelay}},
		{name: "5xx twice", answers: func(w http.ResponseWriter, n int) { writeErr(w, 503, pass.CodeAuthorityUnavailable) },
			wantPOSTs: 2, wantErr: []error{ErrRedemption, pass.ErrUnavailable}, retried: true, wantSleeps: []time.Duration{retry5xxDelay}},
		{name: "invalid success body", answers: func(w http.ResponseWriter, n int) { writeJSON(w, 200, `{"bearer_token":""}`) },
			wantPOSTs: 1, wantErr: []error{ErrProtocol}},
		{name: "unknown token type", answers: func(w http.ResponseWriter, n int) { writeJSON(w, 200, `{"bearer_token":"x","token_type":"MAC"}`) },
			wantPOSTs: 1, wantErr: []error{ErrProtocol}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.redeem = func(w http.ResponseWriter, n int, _ *http.Request, _ []byte) { tt.answers(w, n) }
			c, rec := f.client(Config{MaxRetryWait: 60 * time.Second})
			g := acquireBearer(t, f, c)
			pollSleeps := len(rec.all())
			tok, err := c.RedeemBearerToken(context.Background(), g, RedeemOptions{})
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want %v", err, want)
				}
			}
			if len(tt.wantErr) == 0 && (err != nil || tok.Value() != bearerTok) {
				t.Errorf("RedeemBearerToken = %v, %v", tok, err)
			}
			var re *RedemptionError
			if errors.As(err, &re) && re.Retried != tt.retried {
				t.Errorf("Retried = %v, want %v", re.Retried, tt.retried)
			}
			reds := f.callsTo(svcOrigin + "/redeem-")
			if len(reds) != tt.wantPOSTs {
				t.Fatalf("redemption POSTs = %d, want %d", len(reds), tt.wantPOSTs)
			}
			// Every attempt presents the same pass with a fresh proof (new jti).
			jtis := map[any]bool{}
			for _, r := range reds {
				var body pass.RedemptionRequest
				if err := pass.Decode(r.Body, &body); err != nil || body.AgentPass.Value != passValue {
					t.Fatalf("attempt body: %v", err)
				}
				jtis[claimsOf(t, body.HarnessProof.JWT)["jti"]] = true
			}
			if len(jtis) != len(reds) {
				t.Errorf("%d proofs for %d attempts: jti reused", len(jtis), len(reds))
			}
			if diff := cmp.Diff(tt.wantSleeps, rec.all()[pollSleeps:], cmp.Comparer(func(a, b []time.Duration) bool {
				return len(a) == len(b) && (len(a) == 0 || cmp.Equal(a, b))
			})); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
			if len(f.callsTo("https://evil.test")) != 0 {
				t.Error("a redirect was followed")
			}
			// Whatever happened, the grant is spent (H-POLL-7).
			if _, err := c.RedeemBearerToken(context.Background(), g, RedeemOptions{}); !errors.Is(err, ErrGrantUsed) {
				t.Errorf("second redemption: %v, want ErrGrantUsed", err)
			}
		})
	}
}

// Options that cannot be sent are refused without spending the grant.
func TestRedeemRefusesBadOptions(t *testing.T) {
	f := newFake(t)
	c, _ := f.client(Config{})
	g := acquireBearer(t, f, c)
	ctx := context.Background()
	for _, opts := range []RedeemOptions{{RequestedScope: pass.Scope{}}, {RequestedScope: pass.Scope{""}}} {
		if _, err := c.RedeemBearerToken(ctx, g, opts); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("opts %+v: err = %v, want ErrInvalidRequest", opts, err)
		}
	}
	if _, err := c.RedeemBrowserSession(ctx, g, RedeemOptions{}); !errors.Is(err, ErrWrongType) {
		t.Errorf("browser redemption of a bearer grant: %v", err)
	}
	if _, err := c.RedeemBearerToken(ctx, &Grant{}, RedeemOptions{}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("empty grant: %v", err)
	}
	if g.Used() || len(f.callsTo(svcOrigin+"/redeem-")) != 0 {
		t.Error("a refused option spent the grant or reached the Service")
	}
}

// RFC 9449 extension: a DPoP redemption binds the token to the grant key and
// API calls carry a DPoP proof with ath.
func TestDPoPToken(t *testing.T) {
	f := newFake(t)
	ctx := context.Background()
	replay := dpop.NewMemoryReplayCache(dpop.WithLimit(100), dpop.WithClock(fixedNow))
	dv, err := dpop.NewDPoPVerifier(dpop.DPoPVerifierConfig{Replay: replay, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	var jkt string
	f.redeem = func(w http.ResponseWriter, _ int, r *http.Request, _ []byte) {
		claims, err := dv.Verify(ctx, r.Header.Get("DPoP"), "POST", svcOrigin+"/redeem-bearer-token", "", "")
		if err != nil {
			writeErr(w, 401, pass.CodeInvalidHarnessProof)
			return
		}
		jkt = claims.JKT
		writeJSON(w, 200, map[string]any{"bearer_token": bearerTok, "token_type": "DPoP"})
	}
	nonceSent := false
	f.api = func(w http.ResponseWriter, r *http.Request) {
		if !nonceSent {
			nonceSent = true
			w.Header().Set("DPoP-Nonce", "n-1")
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
			writeErr(w, 401, pass.CodeInvalidToken)
			return
		}
		body, _ := io.ReadAll(r.Body)
		claims, err := dv.Verify(ctx, r.Header.Get("DPoP"), r.Method, "https://todo.test"+r.URL.Path, bearerTok, jkt)
		if err != nil || r.Header.Get("Authorization") != "DPoP "+bearerTok || claims.Nonce != "n-1" || string(body) != "payload" {
			t.Logf("API refused: %v %q %q %d %v", err, r.Header.Get("Authorization"), body, r.ContentLength, r.Proto)
			writeErr(w, 401, pass.CodeInvalidToken)
			return
		}
		writeJSON(w, 200, map[string]any{"ok": true})
	}
	c, _ := f.client(Config{})
	g := acquireBearer(t, f, c)
	tok, err := c.RedeemBearerToken(ctx, g, RedeemOptions{DPoP: true})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Type != "DPoP" || jkt != g.Key.Thumbprint() {
		t.Fatalf("token type %s, bound to %s, want DPoP bound to %s", tok.Type, jkt, g.Key.Thumbprint())
	}
	hc := tok.HTTPClient(f.httpClient())
	resp, err := hc.Post(svcOrigin+"/api/tickets", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckResponse(resp); err != nil {
		t.Fatalf("API call with DPoP (after the nonce retry): %v", err)
	}
	resp.Body.Close()
}

// H-RED-10, H-RED-11: the exact header, with an opaque token used verbatim;
// the token never leaves the Service's origin.
func TestTokenTransport(t *testing.T) {
	f := newFake(t)
	const odd = "not.a.jwt/+=="
	var gotAuth []string
	f.api = func(w http.ResponseWriter, r *http.Request) {
		gotAuth = append(gotAuth, r.Header.Get("Authorization"))
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "https://evil.test/steal", http.StatusFound)
		default:
			writeJSON(w, 200, map[string]any{})
		}
	}
	tok, err := NewToken(svcOrigin, odd, "", nil, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	hc := tok.HTTPClient(f.httpClient())
	resp, err := hc.Get(svcOrigin + "/api/tickets")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if diff := cmp.Diff([]string{"Bearer " + odd}, gotAuth); diff != "" {
		t.Errorf("Authorization (-want +got):\n%s", diff)
	}
	for _, u := range []string{"https://evil.test/api", "http://todo.test/api", "https://todo.test:8443/api", svcOrigin + "/redirect"} {
		_, err := hc.Get(u)
		if !errors.Is(err, ErrCrossOrigin) {
			t.Errorf("GET %s: err = %v, want ErrCrossOrigin", u, err)
		}
	}
	if n := len(f.callsTo("https://evil.test")); n != 0 {
		t.Errorf("evil.test received %d requests", n)
	}
	if _, err := NewToken("https://todo.test/path", "x", "", nil, nil); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("NewToken with a path: %v", err)
	}
	if _, err := NewToken(svcOrigin, "x", "DPoP", nil, nil); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("NewToken DPoP without key: %v", err)
	}
}

// A 401 or 403 from the API is a typed error; nothing is re-acquired.
func TestCheckResponse(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header string
		body   string
		want   APIError
		is     []error
	}{
		{name: "401 with error body", status: 401, body: mustJSON(pass.Fail(pass.CodeDelegationRevoked, "revoked").WithStatus(401).Body()),
			want: APIError{StatusCode: 401, Code: pass.CodeDelegationRevoked, Message: "revoked"}, is: []error{ErrTokenRejected, pass.ErrRevoked}},
		{name: "401 with WWW-Authenticate only", status: 401, header: `Bearer realm="todo", error="invalid_token", error_description="expired"`, body: "nope",
			want: APIError{StatusCode: 401, Code: pass.CodeInvalidToken, WWWAuthenticate: `Bearer realm="todo", error="invalid_token", error_description="expired"`}, is: []error{ErrTokenRejected}},
		{name: "403 insufficient scope", status: 403, body: mustJSON(pass.Fail(pass.CodeInsufficientScope, "needs tickets:write").WithStatus(403).Body()),
			want: APIError{StatusCode: 403, Code: pass.CodeInsufficientScope, Message: "needs tickets:write"}, is: []error{ErrForbidden, pass.ErrScope}},
		{name: "500", status: 500, body: "boom", want: APIError{StatusCode: 500}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(tt.body))}
			if tt.header != "" {
				resp.Header.Set("WWW-Authenticate", tt.header)
			}
			err := CheckResponse(resp)
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *APIError", err)
			}
			if diff := cmp.Diff(tt.want, *ae, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Err" }, cmp.Ignore())); diff != "" {
				t.Errorf("APIError (-want +got):\n%s", diff)
			}
			for _, want := range tt.is {
				if !errors.Is(err, want) {
					t.Errorf("errors.Is(%v) = false", want)
				}
			}
		})
	}
	if err := CheckResponse(&http.Response{StatusCode: 204}); err != nil {
		t.Errorf("204: %v", err)
	}
}

func TestTokenSource(t *testing.T) {
	f := newFake(t)
	now := t0
	c, _ := f.client(Config{Now: func() time.Time { return now }})
	ts := c.TokenSource(bearerRequest(), TokenSourceOptions{})
	ctx := context.Background()
	tok1, err := ts.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := ts.Token(ctx)
	if err != nil || tok2 != tok1 {
		t.Fatalf("second Token = %v, %v; want the cached token", tok2, err)
	}
	if n := len(f.callsTo(authSvc + "/issue")); n != 1 {
		t.Errorf("issuances = %d, want 1", n)
	}
	now = now.Add(10 * time.Minute) // the fake token lives 600 s
	if _, err := ts.Token(ctx); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("expired token: %v, want ErrTokenExpired (no silent re-acquire)", err)
	}
	if n := len(f.callsTo(authSvc + "/issue")); n != 1 {
		t.Errorf("issuances = %d after expiry without Reacquire, want 1", n)
	}

	rs := c.TokenSource(bearerRequest(), TokenSourceOptions{Reacquire: true})
	if _, err := rs.Token(ctx); err != nil {
		t.Fatal(err)
	}
	rs.Invalidate()
	if _, err := rs.Token(ctx); err != nil {
		t.Fatalf("re-acquire: %v", err)
	}
	if n := len(f.callsTo(authSvc + "/issue")); n != 3 {
		t.Errorf("issuances = %d, want 3", n)
	}

	// The transport uses the source.
	var gotAuth string
	f.api = func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		writeJSON(w, 200, map[string]any{})
	}
	hc := &http.Client{Transport: rs.Transport(f.httpClient().Transport)}
	resp, err := hc.Get(svcOrigin + "/api")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gotAuth != "Bearer "+bearerTok {
		t.Errorf("Authorization = %q", gotAuth)
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"3", 3 * time.Second}, {"-1", 0}, {"soon", 0},
		{t0.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{t0.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"99999999999999", 24 * time.Hour},
	} {
		if got := retryAfter(http.Header{"Retry-After": {tt.v}}, t0); got != tt.want {
			t.Errorf("Retry-After %q = %v, want %v", tt.v, got, tt.want)
		}
	}
}

func TestAuthParam(t *testing.T) {
	for _, tt := range []struct{ h, want string }{
		{`Bearer error="invalid_token"`, "invalid_token"},
		{`DPoP algs="ES256", error=use_dpop_nonce`, "use_dpop_nonce"},
		{`Bearer realm="x", myerror="a", error="b"`, "b"},
		{`Bearer error="unterminated`, ""},
		{`Bearer`, ""},
	} {
		if got := authParam(tt.h, "error"); got != tt.want {
			t.Errorf("authParam(%q) = %q, want %q", tt.h, got, tt.want)
		}
	}
}
