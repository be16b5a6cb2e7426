package todoapp

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRoutes(t *testing.T) {
	app := New(func(r *http.Request) (Caller, bool) {
		u := r.Header.Get("X-User")
		return Caller{User: u, Agent: "bot"}, u != ""
	}, "alex@example.com")
	var guarded []string
	mux := http.NewServeMux()
	app.Routes(mux, func(h http.Handler) http.Handler { return h }, func(s ...string) func(http.Handler) http.Handler {
		guarded = append(guarded, s...)
		return func(h http.Handler) http.Handler { return h }
	})
	if strings.Join(guarded, ",") != "todos:read,todos:write,todos:delete,todos:read" {
		t.Fatalf("scopes guarding routes: %v", guarded)
	}
	do := func(method, path, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("X-User", "Alex@example.com")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	if w := do("POST", "/api/todos", `{"title":"Water plants"}`); w.Code != 201 || !strings.Contains(w.Body.String(), "agent bot for Alex@example.com") {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	if w := do("GET", "/api/todos", ""); w.Code != 200 || !strings.Contains(w.Body.String(), "Water plants") || !strings.Contains(w.Body.String(), "passport") {
		t.Fatalf("list: %d %s", w.Code, w.Body)
	}
	if w := do("DELETE", "/api/todos/1", ""); w.Code != 204 {
		t.Fatalf("delete: %d", w.Code)
	}
	if w := do("DELETE", "/api/todos/1", ""); w.Code != 404 {
		t.Fatalf("second delete: %d", w.Code)
	}
	if w := do("GET", "/app", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `id="user">Alex@example.com`) {
		t.Fatalf("page: %d %s", w.Code, w.Body)
	}
	if w := do("POST", "/api/todos", `{"title":""}`); w.Code != 400 {
		t.Fatalf("empty title: %d", w.Code)
	}
}
