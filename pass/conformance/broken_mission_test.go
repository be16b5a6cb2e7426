package conformance_test

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/pass/conformance"
)

// rewriteJSON lets next answer a request to a path ending in suffix and
// passes the decoded JSON answer through edit before sending it on.
func rewriteJSON(method, suffix string, edit func(doc map[string]any)) fault {
	return func(w http.ResponseWriter, r *http.Request, _ map[string]any, next http.Handler) bool {
		if r.Method != method || !strings.HasSuffix(r.URL.Path, suffix) {
			return false
		}
		rec := record(next, r)
		var doc map[string]any
		if json.Unmarshal(rec.Body.Bytes(), &doc) != nil {
			replay(w, rec)
			return true
		}
		edit(doc)
		maps.Copy(w.Header(), rec.Header())
		w.Header().Del("Content-Length")
		httpx.WriteJSON(w, rec.Code, doc)
		return true
	}
}

// successInstead answers, in place of a refusal with one of codes at a
// path ending in suffix, the last success seen there: an Authority that
// skips the rule behind those codes.
func successInstead(suffix string, codes ...pass.Code) fault {
	var mu sync.Mutex
	var last *httptest.ResponseRecorder
	return func(w http.ResponseWriter, r *http.Request, _ map[string]any, next http.Handler) bool {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, suffix) {
			return false
		}
		rec := record(next, r)
		var e struct {
			Error struct{ Code pass.Code } `json:"error"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case rec.Code < 300:
			last = rec
		case last != nil && slices.Contains(codes, e.Error.Code):
			rec = last
		}
		replay(w, rec)
		return true
	}
}

func readCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

func extension(doc map[string]any, uri string) map[string]any {
	x, _ := doc["extensions"].(map[string]any)
	e, _ := x[uri].(map[string]any)
	return e
}

// missionLayerBreaks are parties broken in one rule of the mission layer
// each; every check of the mission layer is shown to fail against one.
func missionLayerBreaks() []breakCase {
	fail := func(id, name string) []want { return []want{{id, name, conformance.Fail}} }
	return []breakCase{
		{name: "Authority completes a mission without a holder proof", only: []string{"ext:mission"},
			auth: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if !strings.HasSuffix(r.URL.Path, "/missions/complete") || r.Header.Get(pass.ProofHeader) != "" {
					return false
				}
				httpx.WriteJSON(w, http.StatusOK, map[string]any{"mission": map[string]any{"id": b["mission_id"], "state": "completed", "version": 3}})
				return true
			},
			want: fail("ext:mission", "a mission is completed")},
		{name: "Authority answers a suspended mission's check with a plain 404", only: []string{"ext:mission"},
			auth: rewriteJSON(http.MethodPost, "/authorization-check", func(doc map[string]any) {
				if e, _ := doc["error"].(map[string]any); e != nil && e["code"] == string(pass.CodeMissionSuspended) {
					delete(doc, "mission")
					e["code"] = string(pass.CodeNotFound)
				}
			}),
			want: fail("ext:mission", "a suspended mission checks")},
		{name: "Authority takes a mission report without a Service assertion", only: []string{"ext:mission"},
			auth: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if !strings.HasSuffix(r.URL.Path, "/missions/report") || r.Header.Get("Authorization") != "" {
					return false
				}
				w.WriteHeader(http.StatusNoContent)
				return true
			},
			want: fail("ext:mission", "the record and reports")},
		{name: "Authority shows the proposal to any poller", only: []string{"ext:compile"},
			auth: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/requests/") || r.Header.Get(pass.ProofHeader) != "" {
					return false
				}
				return rewriteJSON(http.MethodGet, "", func(doc map[string]any) {
					if doc["status"] == "pending" {
						doc["proposal"] = map[string]any{"outcome": "proposed", "scope": []string{"conformance:read"}, "rationale": []any{}, "diff": map[string]any{"over": []string{}}}
					}
				})(w, r, b, next)
			},
			want: fail("ext:compile", "a proposal is shown")},
		{name: "Authority names unrequested scopes in the proposal", only: []string{"ext:compile"},
			auth: rewriteJSON(http.MethodGet, "", func(doc map[string]any) {
				if p, ok := doc["proposal"].(map[string]any); ok {
					p["excluded"] = []map[string]any{{"scope": "conformance:list", "why": "not needed"}}
				}
			}),
			want: fail("ext:compile", "a proposal is shown")},
		{name: "Authority advertises the refuse wildcard policy but replaces", only: []string{"ext:compile"},
			auth: rewriteJSON(http.MethodGet, "/configuration", func(doc map[string]any) {
				if e := extension(doc, pass.ExtCompile); e != nil {
					e["wildcard"] = "refuse"
				}
			}),
			want: fail("ext:compile", `"*" is handled`)},
		{name: "Authority lets a mission skip a stage", only: []string{"ext:stages"},
			auth: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if !strings.HasSuffix(r.URL.Path, "/missions/stage") || b["to"] != "conf-three" {
					return false
				}
				httpx.WriteJSON(w, http.StatusOK, map[string]any{"mission": map[string]any{"id": b["mission_id"], "state": "active", "version": 9}})
				return true
			},
			want: fail("ext:stages", "Authority: a mission moves")},
		{name: "Authority keeps a stale expected_version", only: []string{"ext:stages"},
			auth: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if strings.HasSuffix(r.URL.Path, "/missions/stage") {
					delete(b, "expected_version")
					raw, _ := json.Marshal(b)
					r.Body, r.ContentLength = readCloser(raw), int64(len(raw))
					next.ServeHTTP(w, r)
					return true
				}
				return false
			},
			want: fail("ext:stages", "Authority: a mission moves")},
		{name: "Service refuses a later stage's scope as insufficient_scope", only: []string{"ext:stages"},
			svc: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if r.URL.Path != "/api/items" {
					return false
				}
				rec := record(next, r)
				if strings.Contains(rec.Body.String(), string(pass.CodeStageScopeExceeded)) {
					httpx.WriteError(w, nil, pass.Fail(pass.CodeInsufficientScope, "items:read is not granted"))
					return true
				}
				replay(w, rec)
				return true
			},
			want: fail("ext:stages", "Service: a scope of a later stage")},
		{name: "Authority accepts a child key proof it cannot verify", only: []string{"ext:delegation"},
			auth: successInstead("/missions/delegate", pass.CodeInvalidHarnessProof, pass.CodeHolderKeyReused),
			want: fail("ext:delegation", "a child's key is proven fresh")},
		{name: "Authority delegates past its depth and fan-out", only: []string{"ext:delegation"},
			auth: successInstead("/missions/delegate", pass.CodeDepthExceeded, pass.CodeFanoutExceeded),
			want: fail("ext:delegation", "delegation stops")},
		{name: "Service advertises a receiver on another origin", only: []string{"ext:events"},
			svc: rewriteJSON(http.MethodGet, "/configuration", func(doc map[string]any) {
				if e := extension(doc, pass.ExtEvents); e != nil {
					e["endpoints"] = map[string]string{"receiver": "https://elsewhere.test/events"}
				}
			}),
			want: fail("ext:events", "Service: the events extension")},
		{name: "Service takes a SET signed by a stranger's key", only: []string{"ext:events"},
			svc: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if !strings.HasSuffix(r.URL.Path, "/events") {
					return false
				}
				rec := record(next, r)
				if rec.Code == http.StatusBadRequest {
					w.WriteHeader(http.StatusAccepted)
					return true
				}
				replay(w, rec)
				return true
			},
			want: fail("ext:events", "Service: the SET receiver")},
		{name: "Service takes SETs of any media type", only: []string{"ext:events"},
			svc: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if strings.HasSuffix(r.URL.Path, "/events") {
					r.Header.Set("Content-Type", "application/secevent+jwt")
				}
				return false
			},
			want: fail("ext:events", "Service: the SET receiver")},
		{name: "Authority answers an events poll without a Service assertion", only: []string{"ext:events"},
			auth: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if !strings.HasSuffix(r.URL.Path, "/events/poll") || r.Header.Get("Authorization") != "" {
					return false
				}
				httpx.WriteJSON(w, http.StatusOK, pass.PollResponse{Sets: map[string]string{}})
				return true
			},
			want: fail("ext:events", "Authority: the events poll")},
	}
}

// Against parties that advertise no extension, as plain v0.1 ones, every
// mission-layer check skips: none fails for the absence of an extension.
func TestPlainPartiesSkipTheMissionLayer(t *testing.T) {
	plain := breaking(rewriteJSON(http.MethodGet, "/configuration", func(doc map[string]any) { delete(doc, "extensions") }))
	o := newOurs(t, approveAll(), plain, plain)
	cfg := o.config()
	cfg.Only = []string{"ext:"}
	rep, err := conformance.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range rep.Results {
		if !strings.HasPrefix(r.ID, "ext:") {
			continue
		}
		n++
		if r.Outcome != conformance.Skip {
			t.Errorf("%s %q = %s (%s), want skip", r.ID, r.Name, r.Outcome, r.Got)
		}
	}
	if n < 15 {
		t.Errorf("%d extension checks ran, want at least 15", n)
	}
}
