package httpx

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/agentpass-go/agentpass/internal/jsonscan"
	"github.com/agentpass-go/agentpass/pass"
)

// The documents of every validation and redemption are written here
// without reflection, byte for byte as encoding/json writes them
// (FuzzAppendDocument). A value that encoding/json would escape or
// transform (a string outside printable ASCII or with a quote, a
// backslash or an HTML character; a raw key that is not compact ASCII; a
// time outside UTC) or a member rarely sent (stages, a ceiling, a
// delegation chain) makes appendDocument report false, and the caller
// encodes with encoding/json.

// jsonWriter appends a document; ok turns false at the first value it
// cannot write exactly as encoding/json does.
type jsonWriter struct {
	b  []byte
	ok bool
}

func (w *jsonWriter) raw(s string) { w.b = append(w.b, s...) }

// str writes a string member's value.
func (w *jsonWriter) str(s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			w.ok = false
			return
		}
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, s...)
	w.b = append(w.b, '"')
}

// member writes ,"name": (or "name": for the first member of an object).
func (w *jsonWriter) member(first bool, name string) {
	if !first {
		w.b = append(w.b, ',')
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, name...)
	w.b = append(w.b, '"', ':')
}

// list writes an array of strings ([] for an empty or nil one, as Scope's
// encoder does).
func (w *jsonWriter) list(s []string) {
	w.b = append(w.b, '[')
	for i, v := range s {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.str(v)
	}
	w.b = append(w.b, ']')
}

// rawJSON writes a json.RawMessage that encoding/json would copy as it
// is: valid, compact and printable ASCII without HTML characters.
func (w *jsonWriter) rawJSON(m json.RawMessage) {
	if len(m) == 0 || !jsonscan.Valid(m) {
		w.ok = false
		return
	}
	inString := false
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case c < 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '&':
			w.ok = false
			return
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && c == ' ':
			w.ok = false
			return
		}
	}
	w.b = append(w.b, m...)
}

// time writes a UTC time as time.Time's MarshalJSON does.
func (w *jsonWriter) time(t time.Time) {
	if t.Location() != time.UTC || t.Year() < 0 || t.Year() > 9999 {
		w.ok = false
		return
	}
	w.b = append(w.b, '"')
	w.b = t.AppendFormat(w.b, time.RFC3339Nano)
	w.b = append(w.b, '"')
}

// appendDocument appends v as encoding/json would and reports whether it
// did; for any other type, or a value it cannot write exactly, it reports
// false and what it appended is to be dropped.
func appendDocument(b []byte, v any) ([]byte, bool) {
	w := jsonWriter{b: b, ok: true}
	switch d := v.(type) {
	case pass.ValidationRequest:
		w.raw(`{"agentpass":{"value":`)
		w.str(d.AgentPass.Value)
		w.raw(`}}`)
	case *pass.ValidationRequest:
		return appendDocument(b, *d)
	case pass.RedemptionRequest:
		w.writeRedemption(&d)
	case *pass.RedemptionRequest:
		w.writeRedemption(d)
	case *pass.BearerTokenResponse:
		w.raw(`{"bearer_token":`)
		w.str(d.BearerToken)
		if len(d.Scope) > 0 {
			w.member(false, "scope")
			w.list(d.Scope)
		}
		if d.ExpiresIn != nil {
			w.member(false, "expires_in")
			w.b = strconv.AppendInt(w.b, *d.ExpiresIn, 10)
		}
		if d.TokenType != "" {
			w.member(false, "token_type")
			w.str(d.TokenType)
		}
		w.raw(`}`)
	case *pass.ValidationResponse:
		w.writeValidation(d)
	default:
		return b, false
	}
	return w.b, w.ok
}

// requestSize is about the encoded size of a request appendDocument
// writes, so that its buffer is allocated once.
func requestSize(v any) int {
	const names = 192 // member names and punctuation, with room
	n := names
	switch d := v.(type) {
	case *pass.ValidationRequest:
		return requestSize(*d)
	case *pass.RedemptionRequest:
		return requestSize(*d)
	case pass.ValidationRequest:
		n += len(d.AgentPass.Value)
	case pass.RedemptionRequest:
		n += len(d.AgentPass.Value) + len(d.Authority) + len(d.User.Email)
		if d.HarnessProof != nil {
			n += len(d.HarnessProof.JWT)
		}
		for _, s := range d.RequestedScope {
			n += len(s) + 3
		}
		for _, s := range d.InitializationMethods {
			n += len(s) + 3
		}
	}
	return n
}

func (w *jsonWriter) writeRedemption(d *pass.RedemptionRequest) {
	w.raw(`{"agentpass":{"type":`)
	w.str(string(d.AgentPass.Type))
	w.raw(`,"value":`)
	w.str(d.AgentPass.Value)
	w.raw(`},"authority":`)
	w.str(d.Authority)
	w.raw(`,"user":{"email":`)
	w.str(d.User.Email)
	w.raw(`}`)
	if d.HarnessProof != nil {
		w.raw(`,"harness_proof":{"jwt":`)
		w.str(d.HarnessProof.JWT)
		w.raw(`}`)
	}
	if len(d.RequestedScope) > 0 {
		w.member(false, "requested_scope")
		w.list(d.RequestedScope)
	}
	if len(d.InitializationMethods) > 0 {
		w.member(false, "initialization_methods")
		w.list(d.InitializationMethods)
	}
	w.raw(`}`)
}

func (w *jsonWriter) writeValidation(d *pass.ValidationResponse) {
	w.raw(`{"authorization_id":`)
	w.str(d.AuthorizationID)
	w.raw(`,"user":{"email":`)
	w.str(d.User.Email)
	w.raw(`},"agent":{"id":`)
	w.str(d.Agent.ID)
	w.raw(`},"scope":`)
	w.list(d.Scope)
	w.raw(`,"type":`)
	w.str(string(d.Type))
	if d.DestinationURL != "" {
		w.member(false, "destination_url")
		w.str(d.DestinationURL)
	}
	if d.Cnf != nil {
		w.raw(`,"cnf":{"jwk":`)
		if d.Cnf.JWK == nil {
			w.raw("null")
		} else {
			w.rawJSON(d.Cnf.JWK)
		}
		w.raw(`}`)
	}
	if t := d.Task; t != nil {
		w.raw(`,"task":{`)
		first := true
		for _, m := range [...]struct{ name, v string }{{"id", t.ID}, {"description", t.Description}} {
			if m.v != "" {
				w.member(first, m.name)
				w.str(m.v)
				first = false
			}
		}
		if t.Attestation != nil {
			w.member(first, "attestation")
			w.raw(`{"jwt":`)
			w.str(t.Attestation.JWT)
			w.raw(`}`)
			first = false
		}
		if t.Class != "" {
			w.member(first, "class")
			w.str(t.Class)
			first = false
		}
		if t.Attested {
			w.member(first, "attested")
			w.raw("true")
		}
		w.raw(`}`)
	}
	if d.AuthorizationExpiresAt != nil {
		w.member(false, "authorization_expires_at")
		w.time(*d.AuthorizationExpiresAt)
	}
	if h := d.Harness; h != nil {
		w.raw(`,"harness":{"id":`)
		w.str(h.ID)
		if len(h.Extensions) > 0 {
			w.member(false, "extensions")
			w.list(h.Extensions)
		}
		w.raw(`}`)
	}
	if m := d.Mission; m != nil {
		if len(m.Stages) > 0 || len(m.Ceiling) > 0 || m.Act != nil {
			w.ok = false // staged or delegated: left to encoding/json
			return
		}
		w.raw(`,"mission":{"id":`)
		w.str(m.ID)
		w.raw(`,"state":`)
		w.str(string(m.State))
		w.raw(`,"version":`)
		w.b = strconv.AppendInt(w.b, m.Version, 10)
		if m.Stage != "" {
			w.member(false, "stage")
			w.str(m.Stage)
		}
		if m.Parent != "" {
			w.member(false, "parent")
			w.str(m.Parent)
		}
		if m.HistoryHead != "" {
			w.member(false, "history_head")
			w.str(m.HistoryHead)
		}
		w.raw(`}`)
	}
	w.raw(`}`)
}
