package harness

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// maxAPIErrorBody bounds the error body CheckResponse reads.
const maxAPIErrorBody = 64 << 10

func dpopProof(k *dpop.Key, method, rawURL, token, nonce string, now time.Time) (string, error) {
	if k == nil {
		return "", errors.New("harness: no key for DPoP")
	}
	return k.DPoPProof(method, rawURL, token, nonce, now)
}

// SetAuthHeader sets the Authorization header of r for the token (and, for a
// DPoP token, a fresh DPoP proof for r's method and URL). It refuses, with
// ErrCrossOrigin, a request to any origin other than the token's Service,
// and with ErrMissionClosed any request once its mission was completed or
// abandoned.
func (t *Token) SetAuthHeader(r *http.Request) error {
	if t.mission != nil && t.mission.closed.Load() {
		return ErrMissionClosed
	}
	if !pass.SameOrigin(r.URL.String(), t.Service) {
		return fmt.Errorf("%w: %s is not %s", ErrCrossOrigin, originOf(r), t.Service)
	}
	if t.Type != "DPoP" {
		r.Header.Set("Authorization", "Bearer "+t.value)
		return nil
	}
	nonce := ""
	if p := t.nonce.Load(); p != nil {
		nonce = *p
	}
	proof, err := dpopProof(t.key, r.Method, r.URL.String(), t.value, nonce, t.now())
	if err != nil {
		return fmt.Errorf("harness: DPoP proof: %w", err)
	}
	r.Header.Set("Authorization", "DPoP "+t.value)
	r.Header.Set("DPoP", proof)
	return nil
}

func originOf(r *http.Request) string {
	if r.URL == nil {
		return "(no URL)"
	}
	return r.URL.Scheme + "://" + r.URL.Host
}

// Transport returns an http.RoundTripper that adds the token to every
// request sent through base (http.DefaultTransport when nil): an
// "Authorization: Bearer" header, or for a DPoP token
// "Authorization: DPoP" and a fresh DPoP proof bound to the token (ath).
// A request to another origin, or over plain http, fails with
// ErrCrossOrigin and is not sent, so redirects cannot carry the token away.
// A Service's DPoP-Nonce is remembered, and a request refused with
// use_dpop_nonce is retried once with it when its body can be replayed.
//
// The transport never interprets other answers: use CheckResponse to turn
// a 401 or 403 into an *APIError. It never re-acquires a pass by itself.
func (t *Token) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &tokenTransport{tok: t, base: base}
}

// HTTPClient returns a copy of base (a new client when nil) whose transport
// is t.Transport(base.Transport).
func (t *Token) HTTPClient(base *http.Client) *http.Client {
	var c http.Client
	if base != nil {
		c = *base
	}
	c.Transport = t.Transport(c.Transport)
	return &c
}

type tokenTransport struct {
	tok  *Token
	base http.RoundTripper
}

func (tr *tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	if err := tr.tok.SetAuthHeader(r); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	resp, err := tr.base.RoundTrip(r)
	if err != nil || tr.tok.Type != "DPoP" {
		return resp, err
	}
	n := resp.Header.Get("DPoP-Nonce")
	if n == "" {
		return resp, nil
	}
	tr.tok.nonce.Store(&n)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "use_dpop_nonce") {
		return resp, nil
	}
	// RFC 9449 §8: retry once with the nonce, if the body can be sent again.
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return resp, nil
	}
	r2 := req.Clone(req.Context())
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return resp, nil
		}
		r2.Body = body
	}
	if err := tr.tok.SetAuthHeader(r2); err != nil {
		return resp, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAPIErrorBody))
	resp.Body.Close()
	return tr.base.RoundTrip(r2)
}

// CheckResponse returns nil for an answer below 400. Otherwise it reads the
// body (at most 64 KiB), closes it, and returns an *APIError with the status,
// the wire error code and message when the body is an AgentPass error
// document (or the WWW-Authenticate error parameter), and the
// WWW-Authenticate header. A 401 matches ErrTokenRejected, a 403
// ErrForbidden. Re-acquiring a pass after a 401 is up to the caller.
func CheckResponse(resp *http.Response) error {
	if resp.StatusCode < 400 {
		return nil
	}
	e := &APIError{StatusCode: resp.StatusCode, WWWAuthenticate: resp.Header.Get("WWW-Authenticate")}
	if resp.Body != nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAPIErrorBody))
		resp.Body.Close()
		var er pass.ErrorResponse
		if pass.Decode(body, &er) == nil {
			e.Code = er.Error.Code
			e.Message = truncate(er.Error.Message, maxReasonLen)
			e.Err = &pass.PeerError{Peer: pass.PeerService, Status: resp.StatusCode, Code: e.Code, Message: e.Message}
		}
	}
	if e.Code == "" {
		e.Code = pass.Code(authParam(e.WWWAuthenticate, "error"))
	}
	return e
}

// authParam returns the value of a parameter of a WWW-Authenticate header,
// e.g. error="invalid_token" (quoted or token form), or "". The name is
// matched case-insensitively (ASCII only, so byte offsets never shift).
func authParam(h, name string) string {
	lower := asciiLower(h)
	key := asciiLower(name) + "="
	for off := 0; off < len(h); {
		i := strings.Index(lower[off:], key)
		if i < 0 {
			return ""
		}
		i += off
		off = i + len(key)
		if i > 0 && !strings.ContainsRune(" ,\t", rune(h[i-1])) {
			continue
		}
		v := h[off:]
		if strings.HasPrefix(v, `"`) {
			v = v[1:]
			if j := strings.IndexByte(v, '"'); j >= 0 {
				return truncate(v[:j], 64)
			}
			return ""
		}
		if j := strings.IndexAny(v, " ,\t"); j >= 0 {
			v = v[:j]
		}
		return truncate(v, 64)
	}
	return ""
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
