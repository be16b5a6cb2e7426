package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

func echoServer(t *testing.T) *httptest.Server {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			MethodNotAllowed(w, http.MethodPost)
			return
		}
		var req pass.AuthorizationCheckRequest
		if err := ReadRequest(w, r, &req); err != nil {
			WriteError(w, nil, err)
			return
		}
		if req.AuthorizationID == "boom" {
			WriteError(w, nil, errors.New("secret database detail"))
			return
		}
		if req.AuthorizationID == "gone" {
			WriteError(w, nil, pass.Fail(pass.CodeAuthorizationUnknown, "unknown"))
			return
		}
		WriteJSON(w, http.StatusOK, pass.AuthorizationCheckResponse{Scope: pass.Scope{"a"}})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestServerRejections: X-ERR-1, X-ERR-2 for the classic failures.
func TestServerRejections(t *testing.T) {
	srv := echoServer(t)
	cases := []struct {
		name, method, ctype, body string
		status                    int
		code                      pass.Code
	}{
		{"wrong method", http.MethodGet, "", "", 405, pass.CodeMethodNotAllowed},
		{"wrong content type", http.MethodPost, "text/plain", `{"authorization_id":"x"}`, 415, pass.CodeUnsupportedMediaType},
		{"too large", http.MethodPost, "application/json", `{"authorization_id":"` + strings.Repeat("x", MaxBody) + `"}`, 413, pass.CodeRequestTooLarge},
		{"malformed", http.MethodPost, "application/json", `{"authorization_id":`, 400, pass.CodeInvalidRequest},
		{"missing member", http.MethodPost, "application/json; charset=utf-8", `{}`, 400, pass.CodeInvalidRequest},
		{"internal error hidden", http.MethodPost, "application/json", `{"authorization_id":"boom"}`, 500, pass.CodeInternal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, srv.URL, strings.NewReader(c.body))
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var buf strings.Builder
			_, _ = readAll(&buf, resp)
			if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var body pass.ErrorResponse
			if err := pass.Decode([]byte(buf.String()), &body); err != nil || body.Error.Code != c.code {
				t.Fatalf("body %s: %v", buf.String(), err)
			}
			if strings.Contains(buf.String(), "secret database detail") {
				t.Error("internal cause leaked")
			}
		})
	}
}

func readAll(b *strings.Builder, resp *http.Response) (int64, error) {
	buf := make([]byte, 4096)
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		b.Write(buf[:k])
		n += int64(k)
		if err != nil {
			return n, nil
		}
	}
}

func TestDo(t *testing.T) {
	srv := echoServer(t)
	ctx := context.Background()
	var out pass.AuthorizationCheckResponse
	if _, err := Do(ctx, srv.Client(), Call{URL: srv.URL, Body: pass.AuthorizationCheckRequest{AuthorizationID: "x"}}, &out); err != nil || !out.Scope.Has("a") {
		t.Fatalf("Do: %v %+v", err, out)
	}
	_, err := Do(ctx, srv.Client(), Call{Peer: pass.PeerAuthority, URL: srv.URL + "/status/secret-id", Body: pass.AuthorizationCheckRequest{AuthorizationID: "gone"}}, &out)
	var pe *pass.PeerError
	if !errors.As(err, &pe) || pe.Status != 404 || !errors.Is(err, pass.ErrRevoked) || pe.Peer != pass.PeerAuthority || pe.Origin != srv.URL {
		t.Fatalf("404 answer: %#v", err)
	}
	var sent *pass.Error
	if errors.As(err, &sent) || strings.Contains(err.Error(), "secret-id") {
		t.Fatalf("a peer's answer must not read as an error we send, nor name the path: %v", err)
	}
	// Transport failure: an *UnreachableError naming the peer we called
	// (a Service here), matching ErrUnavailable and no peer answer.
	dead := httptest.NewTLSServer(http.NotFoundHandler())
	client := dead.Client()
	dead.Close()
	_, err = Do(ctx, client, Call{Peer: pass.PeerService, URL: dead.URL + "/x", Body: struct{}{}}, &out)
	var ue *pass.UnreachableError
	if !errors.As(err, &ue) || ue.Peer != pass.PeerService || !errors.Is(err, pass.ErrUnavailable) || errors.As(err, &pe) {
		t.Fatalf("dead peer: %#v", err)
	}
	// 2xx with an invalid document is an error, not a success.
	bad := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, 200, map[string]any{"scope": "not-an-array"})
	}))
	defer bad.Close()
	if _, err := Do(ctx, bad.Client(), Call{URL: bad.URL}, &out); !errors.Is(err, pass.ErrInvalidDocument) {
		t.Fatalf("invalid 2xx: %v", err)
	}
}

func TestBearerToken(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "bearer abc ")
	if BearerToken(r) != "abc" {
		t.Error("case-insensitive scheme")
	}
	r.Header.Set("Authorization", "Basic abc")
	if BearerToken(r) != "" {
		t.Error("basic accepted")
	}
}

// TestDoErrorsHideURLPath: G-2 — a status URL carries the request id, a
// bearer secret for polling ("never log status URLs"), and callers log the
// errors Do returns. Whatever goes wrong, the error names the peer's origin
// but never the path, so the id cannot reach a log through it.
func TestDoErrorsHideURLPath(t *testing.T) {
	const id = "req_S3cretRequestId0123456789"
	ctx := context.Background()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("case") {
		case "text":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("hello"))
		case "large":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"scope":["` + strings.Repeat("a", MaxBody) + `"]}`))
		default:
			WriteJSON(w, 200, map[string]any{"scope": "not-an-array"})
		}
	}))
	defer srv.Close()
	dead := httptest.NewTLSServer(http.NotFoundHandler())
	deadClient := dead.Client()
	dead.Close()

	cases := []struct {
		name   string
		client *http.Client
		url    string
	}{
		{"not json", srv.Client(), srv.URL + "/requests/" + id + "?case=text"},
		{"too large", srv.Client(), srv.URL + "/requests/" + id + "?case=large"},
		{"invalid document", srv.Client(), srv.URL + "/requests/" + id},
		{"unreachable", deadClient, dead.URL + "/requests/" + id},
		{"malformed url", srv.Client(), "https://[::1/requests/" + id},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out pass.AuthorizationCheckResponse
			_, err := Do(ctx, c.client, Call{Method: http.MethodGet, URL: c.url}, &out)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), id) {
				t.Fatalf("error reveals the request id: %v", err)
			}
		})
	}
}

// TestAnswers: the one answering table maps each class of Go error to the
// wire error a peer sees, and keeps the cause out of the message.
func TestAnswers(t *testing.T) {
	errFull := errors.New("role: store full")
	tab := Answers{Busy: []error{errFull}, Self: "the Role", PeerCode: pass.CodeAuthorityUnavailable, Peer: "the Peer"}
	secret := errors.New("db password in text")
	cases := []struct {
		name   string
		err    error
		status int
		code   pass.Code
	}{
		{"wire error passes through", pass.Fail(pass.CodeAgentPassConsumed, "used"), 409, pass.CodeAgentPassConsumed},
		{"full store", fmt.Errorf("x: %w", errFull), 503, pass.CodeTemporarilyUnavailable},
		{"full replay cache", fmt.Errorf("x: %w", dpop.ErrReplayCacheFull), 503, pass.CodeTemporarilyUnavailable},
		{"peer answered an error", &pass.PeerError{Status: 500, Code: pass.CodeInternal}, 502, pass.CodeAuthorityUnavailable},
		{"peer unreachable", &pass.UnreachableError{Err: secret}, 502, pass.CodeAuthorityUnavailable},
		{"discovery", fmt.Errorf("x: %w", discovery.ErrLookupFailed), 502, pass.CodeDiscoveryFailed},
		{"deadline", context.DeadlineExceeded, 503, pass.CodeTemporarilyUnavailable},
		{"anything else", secret, 500, pass.CodeInternal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := tab.Wire(c.err)
			if got.Status != c.status || got.Code != c.code {
				t.Errorf("Wire = %d %s, want %d %s", got.Status, got.Code, c.status, c.code)
			}
			if strings.Contains(got.Body().Error.Message, "password") {
				t.Errorf("the cause reached the wire: %q", got.Body().Error.Message)
			}
			if c.err != nil && !errors.Is(got, c.err) && got != c.err {
				t.Errorf("the cause is not kept for the log")
			}
		})
	}
}

// TestReadBody: a body is read whole whatever its declared length says,
// and in one allocation when the declaration is right (#19); one longer
// than the limit is cut one byte past it, whatever it declares.
func TestReadBody(t *testing.T) {
	body := strings.Repeat("x", 1500)
	for _, declared := range []int64{-1, 0, 1, 1499, 1500, 1501, MaxBody + 1} {
		got, err := readBody(strings.NewReader(body), declared, MaxBody)
		if err != nil || string(got) != body {
			t.Errorf("declared %d: read %d bytes, %v", declared, len(got), err)
		}
		for _, limit := range []int64{1, 1000, 1499, 1500} {
			got, err := readBody(strings.NewReader(body), declared, limit)
			if want := min(limit+1, 1500); err != nil || int64(len(got)) != want {
				t.Errorf("declared %d, limit %d: read %d bytes, %v; want %d", declared, limit, len(got), err, want)
			}
		}
	}
	long := strings.Repeat("y", MaxBody+10)
	if got, err := readBody(strings.NewReader(long), -1, MaxBody); err != nil || len(got) != MaxBody+1 {
		t.Errorf("undeclared long body: read %d bytes, %v; want %d", len(got), err, MaxBody+1)
	}
	r := strings.NewReader(body)
	if n := testing.AllocsPerRun(100, func() {
		r.Reset(body)
		if b, err := readBody(r, int64(len(body)), MaxBody); err != nil || len(b) != len(body) {
			t.Fatal(len(b), err)
		}
	}); n != 1 {
		t.Errorf("%v allocations, want 1", n)
	}
}

// TestWriteJSONBytes: the pooled encoder writes exactly json.Marshal's
// bytes (compact, HTML-escaped, no newline), and a value that cannot be
// encoded is a 500 with the internal error body.
func TestWriteJSONBytes(t *testing.T) {
	for _, v := range []any{
		map[string]any{"a": "<b>&", "n": 1, "s": []string{"x"}},
		pass.ValidationResponse{AuthorizationID: "az_1", Scope: pass.Scope{"a:read"}},
		strings.Repeat("x", 70<<10), // beyond what the pool keeps
	} {
		rec := httptest.NewRecorder()
		WriteJSON(rec, http.StatusCreated, v)
		want, _ := json.Marshal(v)
		if rec.Code != http.StatusCreated || rec.Body.String() != string(want) {
			t.Errorf("WriteJSON(%T) = %d %.80q, want %.80q", v, rec.Code, rec.Body.String(), want)
		}
	}
	rec := httptest.NewRecorder()
	WriteJSON(rec, http.StatusOK, make(chan int))
	want, _ := json.Marshal(pass.Fail(pass.CodeInternal, "internal error").Body())
	if rec.Code != http.StatusInternalServerError || rec.Body.String() != string(want) {
		t.Errorf("unencodable: %d %s", rec.Code, rec.Body.String())
	}
}

// TestIsJSON: the forms answered without mime.ParseMediaType agree with
// it, and nothing else is taken for JSON.
func TestIsJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json": true, "Application/JSON": true, "application/json; charset=utf-8": true,
		"application/json; charset=UTF-8": true, "application/json;charset=utf-8": true, "application/json ; x=y": true,
		"application/jsonx": false, "text/json": false, "": false, "application/json; charset=utf-8; charset=x": false,
		"application/problem+json": false,
	} {
		if got := IsJSON(ct); got != want {
			t.Errorf("IsJSON(%q) = %v, want %v", ct, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { IsJSON("application/json") }); n != 0 {
		t.Errorf("IsJSON: %v allocations", n)
	}
}

// headerWriter is the least a handler writes to: a header map and a sink.
type headerWriter struct {
	h    http.Header
	n    int
	code int
}

func (w *headerWriter) Header() http.Header         { return w.h }
func (w *headerWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }
func (w *headerWriter) WriteHeader(code int)        { w.code = code }

// TestAnswerAllocs (#19 item 2): an answer's headers and encoder cost no
// allocation of their own (before: 3, a slice per Header.Set and the
// encoder); what is left is encoding/json's for the value.
func TestAnswerAllocs(t *testing.T) {
	w := &headerWriter{h: http.Header{}}
	v := &pass.BearerTokenResponse{BearerToken: "apt_x", TokenType: "DPoP"}
	WriteJSON(w, http.StatusOK, v) // warm the pool
	limit := 0.0
	if raceEnabled {
		limit = 2 // sync.Pool drops its entries at random under the race detector
	}
	if n := testing.AllocsPerRun(100, func() {
		NoStore(w.h)
		WriteJSON(w, http.StatusOK, v)
	}); n > limit {
		t.Errorf("WriteJSON: %v allocations, want at most %v", n, limit)
	}
	if w.h.Get("Cache-Control") != "no-store" || w.h.Get("Content-Type") != "application/json" || w.h.Get("X-Content-Type-Options") != "nosniff" || w.code != http.StatusOK {
		t.Errorf("headers %v, status %d", w.h, w.code)
	}
}

// TestDoAllocs (#19 item 2): one call and its answer, both sides of a real
// TLS connection, stay within the allocations counted when the headers,
// the body limit and the encoder stopped allocating (before: 105).
func TestDoAllocs(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in pass.ValidationRequest
		if err := ReadRequest(w, r, &in); err != nil {
			WriteError(w, nil, err)
			return
		}
		WriteJSON(w, http.StatusOK, &in)
	}))
	defer srv.Close()
	client := srv.Client()
	call := Call{Peer: pass.PeerAuthority, URL: srv.URL + "/validate", Bearer: "tok", Body: pass.ValidationRequest{AgentPass: pass.PassValue{Value: "ap_x"}},
		Header: http.Header{"Dpop": {"proof"}}} // an extra header costs no copy
	do := func() {
		var out pass.ValidationRequest
		if _, err := Do(context.Background(), client, call, &out); err != nil || out.AgentPass.Value != "ap_x" {
			t.Fatal(out, err)
		}
	}
	do() // the connection
	n := testing.AllocsPerRun(200, do)
	t.Logf("Do: %v allocations (both sides)", n)
	limit := 102.0 // with the extra header: 103 when Do copied its values
	if raceEnabled {
		limit = 127 // the race detector's runtime and sync.Pool drops allocate too
	}
	if n > limit {
		t.Errorf("Do: %v allocations, want at most %v", n, limit)
	}
}

// TestDoExtraHeaders: Call.Header's values are sent under their canonical
// names, two spellings of one name both arrive, and the caller's slices are
// never written.
func TestDoExtraHeaders(t *testing.T) {
	var got http.Header
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		WriteJSON(w, 200, pass.AuthorizationCheckResponse{Scope: pass.Scope{"a"}})
	}))
	defer srv.Close()
	one := make([]string, 1, 4)
	one[0] = "1"
	h := http.Header{"x-pin": one, "X-Pin": {"2"}, "Dpop": {"p"}, "X-Empty": nil}
	var out pass.AuthorizationCheckResponse
	if _, err := Do(t.Context(), srv.Client(), Call{URL: srv.URL, Header: h, Body: pass.AuthorizationCheckRequest{AuthorizationID: "x"}}, &out); err != nil {
		t.Fatal(err)
	}
	if pins := got.Values("X-Pin"); len(pins) != 2 || !slices.Contains(pins, "1") || !slices.Contains(pins, "2") {
		t.Errorf("X-Pin: %q, want both values", pins)
	}
	if got.Get("Dpop") != "p" || got.Get("Accept") != "application/json" {
		t.Errorf("headers: %v", got)
	}
	if one[:2][1] != "" || len(h["X-Pin"]) != 1 || h["X-Pin"][0] != "2" {
		t.Errorf("the caller's header values were written: %q %q", one[:2], h["X-Pin"])
	}
}

// TestPooledBodiesDoNotAlias: bodies are read into reused buffers, so a
// decoded document must own its strings: every document decoded on either
// side (ReadRequest on the server, Do on the client) is intact after many
// later bodies went through the same buffers.
func TestPooledBodiesDoNotAlias(t *testing.T) {
	var mu sync.Mutex
	var served []pass.RedemptionRequest
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in pass.RedemptionRequest
		if err := ReadRequest(w, r, &in); err != nil {
			WriteError(w, nil, err)
			return
		}
		mu.Lock()
		served = append(served, in)
		mu.Unlock()
		WriteJSON(w, http.StatusOK, &in)
	}))
	defer srv.Close()
	want := func(i int) pass.RedemptionRequest {
		c := string(rune('a' + i%26))
		return pass.RedemptionRequest{
			AgentPass: pass.AgentPass{Type: pass.BearerToken, Value: "ap_" + strings.Repeat(c, 40)},
			Authority: "https://" + c + ".example.com",
			User:      pass.User{Email: c + "@example.com"},
			HarnessProof: &pass.JWTContainer{JWT: strings.Repeat(c, 20) + "." +
				strings.Repeat(c, 300) + "." + strings.Repeat(c, 80)},
			RequestedScope: pass.Scope{"read:" + c},
		}
	}
	const n = 40
	got := make([]pass.RedemptionRequest, n)
	for i := range n {
		if _, err := Do(t.Context(), srv.Client(), Call{URL: srv.URL, Body: want(i)}, &got[i]); err != nil {
			t.Fatal(i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(served) != n {
		t.Fatalf("served %d", len(served))
	}
	for i := range n {
		if d := cmp.Diff(want(i), got[i]); d != "" {
			t.Errorf("client's document %d changed (-want +got):\n%s", i, d)
		}
		if d := cmp.Diff(want(i), served[i]); d != "" {
			t.Errorf("server's document %d changed (-want +got):\n%s", i, d)
		}
	}
}
