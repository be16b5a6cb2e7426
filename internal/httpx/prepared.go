package httpx

import (
	"encoding/json"
	"net/http"

	"github.com/agentpass-go/agentpass/pass"
)

// Header values shared by every prepared answer. A header map holds them
// with their capacity equal to their length, so a later Add copies them;
// nothing may change them in place.
var (
	valueJSON    = []string{"application/json"}
	valueNosniff = []string{"nosniff"}
	valueNoStore = []string{"no-store"}
	valueNoCache = []string{"no-cache"}
)

// Prepared is an error answer encoded once, for an answer sent so often
// that encoding it each time would be most of its cost (the 429 of a rate
// limit under a flood). It sends what WriteError sends for e, without
// allocating.
type Prepared struct {
	status int
	body   []byte
}

// Prepare encodes the answer to e once.
func Prepare(e *pass.Error) Prepared {
	b, _ := json.Marshal(e.Body()) // strings only: it always encodes
	return Prepared{status: e.Status, body: b}
}

// Write sends the answer. The header values it sets are shared: a caller
// may replace them (Header().Set) but never change them in place.
func (p Prepared) Write(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = valueJSON[:1:1]
	h["X-Content-Type-Options"] = valueNosniff[:1:1]
	w.WriteHeader(p.status)
	_, _ = w.Write(p.body)
}
