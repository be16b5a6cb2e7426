// Package httpx is the JSON-over-HTTPS plumbing shared by the role packages.
//
// # Overview
//
// On the server side, [ReadRequest] decodes a bounded, validated request and
// [WriteError] answers any error as the wire error body, keeping internal
// causes off the wire. On the client side, [Do] makes one bounded,
// validated call to a peer and maps its answer to the pass error types.
//
// # Usage
//
//	var req pass.ResolutionRequest
//	if err := httpx.ReadRequest(w, r, &req); err != nil {
//		httpx.WriteError(w, logger, err)
//		return
//	}
//
//	var cfg pass.AuthorityConfiguration
//	_, err := httpx.Do(ctx, client, httpx.Call{Peer: pass.PeerAuthority, URL: u}, &cfg)
package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// MaxBody is the largest request or response body accepted (64 KiB).
const MaxBody = pass.MaxDocumentSize

// ReadRequest decodes a POSTed JSON document into doc and validates it. It
// answers the classic failures as *pass.Error: wrong content type (415),
// body over 64 KiB (413), malformed or invalid document (400).
func ReadRequest(w http.ResponseWriter, r *http.Request, doc pass.Document) error {
	if !IsJSON(r.Header.Get("Content-Type")) {
		return pass.Fail(pass.CodeUnsupportedMediaType, "Content-Type must be application/json")
	}
	buf := getBody(r.ContentLength)
	body, err := readInto(*buf, http.MaxBytesReader(w, r.Body, MaxBody), r.ContentLength, MaxBody)
	defer putBody(buf, body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return pass.Fail(pass.CodeRequestTooLarge, "request body exceeds 64 KiB")
		}
		return pass.Fail(pass.CodeInvalidRequest, "could not read request body").WithCause(err)
	}
	if err := pass.Decode(body, doc); err != nil {
		return InvalidRequest(err)
	}
	return nil
}

// readBody is io.ReadAll(io.LimitReader(r, limit+1)) with the buffer sized
// from the declared length (within MaxBody), so a body is read into one
// allocation instead of a doubling series and without a LimitReader; a
// wrong declaration only costs growth, as without it. A body longer than
// limit is returned cut at limit+1 bytes, for the caller to refuse.
func readBody(r io.Reader, declared, limit int64) ([]byte, error) {
	return readInto(nil, r, declared, limit)
}

// readInto is readBody into b's array when b has room for the declared
// length (b may be nil).
func readInto(b []byte, r io.Reader, declared, limit int64) ([]byte, error) {
	size := declared + 1 // +1: EOF is seen without growing
	if declared <= 0 || declared > MaxBody {
		size = 512
	}
	if int64(cap(b)) < min(size, limit+1) {
		b = make([]byte, 0, min(size, limit+1))
	}
	b = b[:0]
	for int64(len(b)) <= limit {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		room := min(int64(cap(b)-len(b)), limit+1-int64(len(b)))
		n, err := r.Read(b[len(b) : len(b)+int(room)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// pooledBody is the size of the reused buffers that bodies of up to
// pooledBody-1 declared bytes (nearly every protocol document) are read
// into: a body is dropped once its document is decoded, and decoding copies
// out every string it keeps, so the buffer can serve the next request.
const pooledBody = 4 << 10

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, pooledBody); return &b }}

// getBody returns a pooled buffer for a body of the declared length, or a
// pointer to nil when the body will not fit one.
func getBody(declared int64) *[]byte {
	if declared >= pooledBody {
		return new([]byte)
	}
	return bodyPool.Get().(*[]byte)
}

// putBody clears and returns buf to the pool once body, read into it, is
// no longer used: what a peer sent (a pass, a proof) does not outlive its
// request in a reused buffer.
func putBody(buf *[]byte, body []byte) {
	if cap(*buf) != pooledBody {
		return
	}
	if cap(body) == pooledBody && len(body) > 0 && &body[:1][0] == &(*buf)[:1][0] {
		clear(body)
	} else {
		clear((*buf)[:pooledBody]) // grown out of it: it holds a prefix
	}
	bodyPool.Put(buf)
}

// InvalidRequest turns a decoding or validation error into a 400 whose
// message names the offending member (the FieldError text is safe to send:
// it never contains the member's value).
func InvalidRequest(err error) *pass.Error {
	msg := "invalid request"
	var fe *pass.FieldError
	if errors.As(err, &fe) {
		msg = "invalid " + fe.Field + ": " + fe.Reason
	}
	return pass.Fail(pass.CodeInvalidRequest, msg).WithCause(err)
}

// IsJSON reports whether a Content-Type header names application/json (with
// optional parameters).
func IsJSON(contentType string) bool {
	// The forms peers send, answered without mime's map of parameters.
	if strings.EqualFold(contentType, "application/json") || strings.EqualFold(contentType, "application/json; charset=utf-8") {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

// WriteJSON writes v as a JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	// Encoded into a pooled buffer: json.Marshal would copy every answer
	// into a new slice. The answers of validation and redemption are
	// written without reflection (encode.go), the same bytes.
	a := answerBufs.Get().(*answerBuf)
	defer func() {
		if a.buf.Cap() <= MaxBody {
			answerBufs.Put(a)
		}
	}()
	a.buf.Reset()
	b, ok := appendDocument(a.buf.AvailableBuffer(), v)
	if !ok {
		if err := a.enc.Encode(v); err != nil {
			status = http.StatusInternalServerError
			a.buf.Reset()
			_ = a.enc.Encode(pass.Fail(pass.CodeInternal, "internal error").Body())
		}
		b = bytes.TrimSuffix(a.buf.Bytes(), []byte("\n")) // Encode's newline: the bytes of json.Marshal
	} else {
		a.buf.Write(b) // kept with the pooled buffer's capacity
		b = a.buf.Bytes()
	}
	h := w.Header()
	h["Content-Type"] = valueJSON[:1:1] // shared values, as Prepared's
	h["X-Content-Type-Options"] = valueNosniff[:1:1]
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// answerBuf is a pooled buffer with the encoder that writes to it, so an
// answer allocates neither.
type answerBuf struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var answerBufs = sync.Pool{New: func() any {
	a := new(answerBuf)
	a.enc = json.NewEncoder(&a.buf)
	return a
}}

// NoStore marks an answer as not to be stored by caches (Cache-Control:
// no-store), as every answer carrying a secret or a one-time result is,
// without allocating.
func NoStore(h http.Header) { h["Cache-Control"] = valueNoStore[:1:1] }

// NoStoreNoCache is NoStore with Pragma: no-cache too, for answers that
// carry a credential to HTTP/1.0 caches as well (RFC 6749 §5.1).
func NoStoreNoCache(h http.Header) {
	NoStore(h)
	h["Pragma"] = valueNoCache[:1:1]
}

// WriteError answers with the structured error body of err. An error that is
// not a *pass.Error becomes a 500 whose cause stays out of the response; it
// is logged to logger when one is given.
func WriteError(w http.ResponseWriter, logger *slog.Logger, err error) {
	var pe *pass.Error
	if !errors.As(err, &pe) {
		if logger != nil {
			logger.Error("internal error", "error", err)
		}
		pe = pass.Fail(pass.CodeInternal, "internal error")
	}
	if pe.Status == http.StatusMethodNotAllowed && w.Header().Get("Allow") == "" {
		w.Header().Set("Allow", http.MethodPost)
	}
	WriteJSON(w, pe.Status, pe.Body())
}

// MethodNotAllowed is the 405 answer; allow lists the accepted methods.
func MethodNotAllowed(w http.ResponseWriter, allow ...string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	WriteError(w, nil, pass.Fail(pass.CodeMethodNotAllowed, "method not allowed"))
}

// BearerToken returns the token of an "Authorization: Bearer" header, or "".
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Call describes one JSON request to a peer.
type Call struct {
	Peer   pass.Peer // whom we call, named in the errors; required
	Method string    // default POST when Body is set, GET otherwise
	URL    string
	Bearer string      // sent as Authorization: Bearer when set
	Header http.Header // extra headers
	Body   any         // JSON-encoded when non-nil
}

// Do performs the call and decodes a 2xx answer into out (validated). A
// non-2xx answer returns a *pass.PeerError read from the peer's error body; a
// failure before any answer (dial, TLS, timeout, a body cut short) returns a
// *pass.UnreachableError (it matches pass.ErrUnavailable); both name
// c.Peer. A 2xx answer that is not a valid document matches
// pass.ErrInvalidDocument. The answer's headers are returned for callers
// that read them. Bodies are read up to 64 KiB.
//
// Errors name the peer by origin only, never by the URL's path or query: a
// status URL carries the request id, which is all anyone needs to poll for
// the pass, and callers log these errors.
func Do(ctx context.Context, client *http.Client, c Call, out pass.Document) (http.Header, error) {
	if client == nil {
		client = http.DefaultClient
	}
	method := c.Method
	var body io.Reader
	if c.Body != nil {
		b, ok := appendDocument(make([]byte, 0, requestSize(c.Body)), c.Body)
		if !ok {
			var err error
			if b, err = json.Marshal(c.Body); err != nil {
				return nil, fmt.Errorf("httpx: encode request: %w", err)
			}
		}
		body = bytes.NewReader(b)
		if method == "" {
			method = http.MethodPost
		}
	}
	if method == "" {
		method = http.MethodGet
	}
	// Only errors name the peer: the redacted forms are made when one is.
	where := func() string { return method + " " + redactURL(c.URL) }
	req, err := http.NewRequestWithContext(ctx, method, c.URL, body)
	if err != nil {
		return nil, fmt.Errorf("httpx: %s: invalid URL", where())
	}
	h := req.Header
	for k, vs := range c.Header {
		if len(vs) == 0 {
			continue
		}
		// The caller's values are shared, capped so that an append (two
		// spellings of one name) copies them: nothing writes a request's
		// header values in place.
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if cur := h[ck]; cur == nil {
			h[ck] = vs[:len(vs):len(vs)]
		} else {
			h[ck] = append(cur[:len(cur):len(cur)], vs...)
		}
	}
	// Canonical names set directly, and the constant values shared (see
	// valueJSON): Header.Set would allocate a slice for each.
	h["Accept"] = valueJSON[:1:1]
	if body != nil {
		h["Content-Type"] = valueJSON[:1:1]
	}
	if c.Bearer != "" {
		h["Authorization"] = []string{"Bearer " + c.Bearer}
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &pass.UnreachableError{Peer: c.Peer, Origin: redactOrigin(c.URL), Err: fmt.Errorf("httpx: %s: %w", where(), stripURLError(err))}
	}
	defer resp.Body.Close()
	buf := getBody(resp.ContentLength)
	raw, err := readInto(*buf, resp.Body, resp.ContentLength, MaxBody)
	defer putBody(buf, raw)
	if err != nil {
		return resp.Header, &pass.UnreachableError{Peer: c.Peer, Origin: redactOrigin(c.URL), Err: fmt.Errorf("httpx: %s: reading the answer: %w", where(), stripURLError(err))}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		pe := pass.ErrorFromResponse(resp.StatusCode, raw)
		pe.Peer, pe.Origin = c.Peer, redactOrigin(c.URL)
		return resp.Header, pe
	}
	if len(raw) > MaxBody {
		return resp.Header, fmt.Errorf("httpx: %s: response larger than 64 KiB: %w", where(), pass.ErrInvalidDocument)
	}
	if out == nil {
		return resp.Header, nil
	}
	if !IsJSON(resp.Header.Get("Content-Type")) {
		return resp.Header, fmt.Errorf("httpx: %s: response is not application/json: %w", where(), pass.ErrInvalidDocument)
	}
	if err := pass.Decode(raw, out); err != nil {
		return resp.Header, fmt.Errorf("httpx: %s: invalid response: %w", where(), err)
	}
	return resp.Header, nil
}

// redactURL returns the origin of raw followed by "/…" when raw has more
// (path, query), or "<invalid URL>": the form of a URL errors may carry.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "<invalid URL>"
	}
	out := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		out += "/…"
	}
	return out
}

// redactOrigin returns the origin of raw, or "<invalid URL>".
func redactOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "<invalid URL>"
	}
	return u.Scheme + "://" + u.Host
}

// stripURLError removes the *url.Error layer, whose text repeats the full
// URL; its cause (dial, TLS, timeout, context errors) stays matchable.
func stripURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Answers is one role's table from Go errors to the wire errors it answers
// with: the one mapping both roles use, with the few parts that differ by
// role. A *pass.Error passes through; a full store or replay cache, or a
// deadline, is 503 temporarily_unavailable (the caller did nothing wrong
// and may retry); a peer that failed or could not be reached is PeerCode; a
// failed discovery is 502 discovery_failed; anything else is 500 with the
// cause kept for the log only.
type Answers struct {
	// Busy are the sentinels of this role's full stores.
	Busy []error
	// Self names the role in messages ("the Service", "the Authority").
	Self string
	// PeerCode and Peer describe a failed peer ("the Authority failed").
	PeerCode pass.Code
	Peer     string
}

// Wire maps err to the wire error to answer with.
func (t Answers) Wire(err error) *pass.Error {
	var (
		pe *pass.Error
		pr *pass.PeerError
		ue *pass.UnreachableError
	)
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.Is(err, dpop.ErrReplayCacheFull) || slices.ContainsFunc(t.Busy, func(b error) bool { return errors.Is(err, b) }):
		return pass.Fail(pass.CodeTemporarilyUnavailable, t.Self+" is busy; retry later").WithCause(err)
	case errors.As(err, &ue), errors.As(err, &pr):
		return pass.Fail(t.PeerCode, t.Peer+" failed").WithCause(err)
	case errors.Is(err, discovery.ErrLookupFailed), errors.Is(err, discovery.ErrFetchFailed):
		return pass.Fail(pass.CodeDiscoveryFailed, "discovery failed").WithCause(err)
	case errors.Is(err, context.DeadlineExceeded):
		return pass.Fail(pass.CodeTemporarilyUnavailable, "timed out; retry later").WithCause(err)
	}
	return pass.Fail(pass.CodeInternal, "internal error").WithCause(err)
}
