// Package todoapp is the sample Service application of the examples: a small
// to-do API and web page.
//
// # Overview
//
// It knows nothing of AgentPass, as a real application would not: [New]
// takes a function that says who a request acts for (the service
// middleware's delegation), and [App.Routes] takes the middleware and the
// scope check that guard each route.
//
// # Usage
//
//	app := todoapp.New(func(r *http.Request) (todoapp.Caller, bool) {
//		d, ok := service.DelegationFrom(r.Context())
//		if !ok {
//			return todoapp.Caller{}, false
//		}
//		return todoapp.Caller{User: d.User, Agent: d.Agent}, true
//	}, "alex@corp.test")
//	app.Routes(mux, svc.Middleware, func(scopes ...string) func(http.Handler) http.Handler {
//		return service.RequireScope(scopes...)
//	})
package todoapp

import (
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Scopes the application defines.
const (
	ScopeRead   = "todos:read"
	ScopeWrite  = "todos:write"
	ScopeDelete = "todos:delete"
)

// Item is one to-do.
type Item struct {
	ID        int       `json:"id"`
	Title     string    `json:"title"`
	Done      bool      `json:"done"`
	CreatedBy string    `json:"created_by"` // "alex@example.com" or "agent:claude via alex@example.com"
	CreatedAt time.Time `json:"created_at"`
}

// Caller is who a request acts for.
type Caller struct {
	User  string // the User's e-mail
	Agent string // the agent id, empty for the User in person
}

func (c Caller) label() string {
	if c.Agent == "" {
		return c.User
	}
	return "agent " + c.Agent + " for " + c.User
}

// App is an in-memory to-do application. It is safe for concurrent use.
type App struct {
	// CallerFrom returns who the request acts for; false means
	// unauthenticated (the caller's middleware normally answered already).
	CallerFrom func(*http.Request) (Caller, bool)

	mu     sync.Mutex
	nextID int
	lists  map[string][]Item // by lower-case user e-mail
}

// New returns an App with a few items for each seeded user.
func New(callerFrom func(*http.Request) (Caller, bool), seedUsers ...string) *App {
	a := &App{CallerFrom: callerFrom, lists: map[string][]Item{}}
	for _, u := range seedUsers {
		a.add(u, Caller{User: u}, "Renew the passport")
		a.add(u, Caller{User: u}, "Book the dentist")
	}
	return a
}

func (a *App) add(user string, by Caller, title string) Item {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.nextID++
	it := Item{ID: a.nextID, Title: title, CreatedBy: by.label(), CreatedAt: time.Now().UTC()}
	k := strings.ToLower(user)
	a.lists[k] = append(a.lists[k], it)
	return it
}

// Items returns a copy of user's list.
func (a *App) Items(user string) []Item {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Item(nil), a.lists[strings.ToLower(user)]...)
}

func (a *App) remove(user string, id int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := strings.ToLower(user)
	for i, it := range a.lists[k] {
		if it.ID == id {
			a.lists[k] = append(a.lists[k][:i], a.lists[k][i+1:]...)
			return true
		}
	}
	return false
}

// Guard wraps a handler with the scope check of the embedding Service.
type Guard func(scopes ...string) func(http.Handler) http.Handler

// Routes registers the API and the page on mux, each wrapped by auth (the
// Service's authentication middleware) and guard (its scope check):
//
//	GET    /api/todos       todos:read
//	POST   /api/todos       todos:write   {"title": "..."}
//	DELETE /api/todos/{id}  todos:delete
//	GET    /app             todos:read    (HTML, for browser sessions)
func (a *App) Routes(mux *http.ServeMux, auth func(http.Handler) http.Handler, guard Guard) {
	mux.Handle("GET /api/todos", auth(guard(ScopeRead)(http.HandlerFunc(a.list))))
	mux.Handle("POST /api/todos", auth(guard(ScopeWrite)(http.HandlerFunc(a.create))))
	mux.Handle("DELETE /api/todos/{id}", auth(guard(ScopeDelete)(http.HandlerFunc(a.delete))))
	mux.Handle("GET /app", auth(guard(ScopeRead)(http.HandlerFunc(a.page))))
}

func (a *App) caller(w http.ResponseWriter, r *http.Request) (Caller, bool) {
	c, ok := a.CallerFrom(r)
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]string{"code": "unauthenticated", "message": "no caller"}})
	}
	return c, ok
}

func (a *App) list(w http.ResponseWriter, r *http.Request) {
	c, ok := a.caller(w, r)
	if !ok {
		return
	}
	items := a.Items(c.User)
	if items == nil {
		items = []Item{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": c.User, "items": items})
}

func (a *App) create(w http.ResponseWriter, r *http.Request) {
	c, ok := a.caller(w, r)
	if !ok {
		return
	}
	var body struct {
		Title string `json:"title"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil || strings.TrimSpace(body.Title) == "" || len(body.Title) > 200 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_request", "message": "title required (≤ 200 bytes)"}})
		return
	}
	writeJSON(w, http.StatusCreated, a.add(c.User, c, strings.TrimSpace(body.Title)))
}

func (a *App) delete(w http.ResponseWriter, r *http.Request) {
	c, ok := a.caller(w, r)
	if !ok {
		return
	}
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || !a.remove(c.User, id) {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]string{"code": "not_found", "message": "no such item"}})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>To-do · {{.User}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1d2433}
h1{font-size:1.6rem;margin-bottom:.2rem} .who{color:#55607a;margin-top:0}
ul{list-style:none;padding:0} li{padding:.6rem .8rem;border:1px solid #dde3ee;border-radius:.5rem;margin:.4rem 0}
small{color:#7a849c}
</style></head><body>
<h1>To-do list</h1>
<p class="who" id="who">Signed in as <strong id="user">{{.User}}</strong>{{if .Agent}} · acting agent <strong id="agent">{{.Agent}}</strong>{{end}}</p>
<ul id="items">{{range .Items}}<li>{{.Title}} <small>added by {{.CreatedBy}}</small></li>{{else}}<li>Nothing to do.</li>{{end}}</ul>
</body></html>`))

func (a *App) page(w http.ResponseWriter, r *http.Request) {
	c, ok := a.caller(w, r)
	if !ok {
		return
	}
	items := a.Items(c.User)
	sort.Slice(items, func(i, j int) bool { return items[i].ID < items[j].ID })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = pageTmpl.Execute(w, map[string]any{"User": c.User, "Agent": c.Agent, "Items": items})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
