package pass

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/agentpass-go/agentpass/internal/jsonscan"
)

// The documents of every redemption (the request, the Authority's
// validation answer and the bearer answer) are read here in one pass over
// already validated JSON instead of by reflection, which cost them dozens
// of allocations each.
// These readers only ever accept: on anything they do not handle exactly as
// encoding/json does (an escape in a string, null where a value is
// expected, a member name encoding/json would match case-insensitively, a
// wrong type) they report false, and the document is decoded by
// encoding/json from scratch. So the accept set stays encoding/json's, and
// FuzzDecodeFastPath checks that whatever they accept decodes to the same
// value there.

// fastMembers calls f with the name and raw value of each member of the
// JSON object b (valid JSON, b[0] == '{'). It reports false as soon as f
// does, or for a name with an escape, which encoding/json would unquote.
func fastMembers(b []byte, f func(name, raw []byte) bool) bool {
	i := jsonscan.SkipSpace(b, 1)
	if i < len(b) && b[i] == '}' {
		return true
	}
	for i < len(b) {
		end := jsonscan.StringEnd(b, i)
		name := b[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			return false
		}
		i = jsonscan.SkipSpace(b, jsonscan.SkipSpace(b, end)+1) // past the colon
		vend := jsonscan.ValueEnd(b, i)
		if !f(name, b[i:vend]) {
			return false
		}
		i = jsonscan.SkipSpace(b, vend)
		if i >= len(b) || b[i] == '}' {
			return true
		}
		i = jsonscan.SkipSpace(b, i+1) // past the comma
	}
	return false
}

// fastElements calls f with each element of the JSON array b (valid JSON,
// b[0] == '[') and reports false as soon as f does.
func fastElements(b []byte, f func(raw []byte) bool) bool {
	i := jsonscan.SkipSpace(b, 1)
	if i < len(b) && b[i] == ']' {
		return true
	}
	for i < len(b) {
		vend := jsonscan.ValueEnd(b, i)
		if !f(b[i:vend]) {
			return false
		}
		i = jsonscan.SkipSpace(b, vend)
		if i >= len(b) || b[i] == ']' {
			return true
		}
		i = jsonscan.SkipSpace(b, i+1)
	}
	return false
}

// unknownMember reports whether name is a member encoding/json ignores:
// it matches none of known, even case-insensitively (encoding/json would
// decode "AgentPass" into agentpass).
func unknownMember(name []byte, known ...string) bool {
	for _, k := range known {
		if bytes.EqualFold(name, []byte(k)) {
			return false
		}
	}
	return true
}

// plainString returns the contents of the JSON string raw when they need
// no unquoting: no escape and valid UTF-8 (encoding/json replaces invalid
// bytes).
func plainString(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, false
	}
	s := raw[1 : len(raw)-1]
	if bytes.IndexByte(s, '\\') >= 0 || !utf8.Valid(s) {
		return nil, false
	}
	return s, true
}

// isNull reports whether raw is the literal null.
func isNull(raw []byte) bool { return len(raw) == 4 && string(raw) == "null" }

// member points *dst at the value a pointer member raw decodes into, as
// encoding/json does: nil for null (and member reports false), the value
// already there for a repeated member, else slot, cleared (fresh after a
// null). slot is the document's own storage, so no allocation is made.
func member[T any](raw []byte, dst **T, slot *T) bool {
	if isNull(raw) {
		*dst = nil
		return false
	}
	if *dst == nil {
		*slot = *new(T)
		*dst = slot
	}
	return true
}

// strs makes the strings of one document. With shared set, they are
// substrings of one copy of the document, one allocation for all of them;
// that copy then lives as long as any of them, so only documents that are
// dropped with their request share it.
type strs struct {
	doc    []byte
	shared string
}

func (d *strs) of(b []byte) string {
	if d.shared != "" {
		i := cap(d.doc) - cap(b)
		return d.shared[i : i+len(b)]
	}
	return string(b)
}

// str decodes a JSON string member into *dst as encoding/json does (null
// leaves it unchanged).
func (d *strs) str(raw []byte, dst *string) bool {
	if isNull(raw) {
		return true
	}
	s, ok := plainString(raw)
	if ok {
		*dst = d.of(s)
	}
	return ok
}

// passType decodes a pass type without allocating for the two known ones.
func (d *strs) passType(raw []byte, dst *PassType) bool {
	if isNull(raw) {
		return true
	}
	s, ok := plainString(raw)
	switch {
	case !ok:
		return false
	case string(s) == string(BearerToken):
		*dst = BearerToken
	case string(s) == string(BrowserSession):
		*dst = BrowserSession
	default:
		*dst = PassType(d.of(s))
	}
	return true
}

// stringList decodes an array of strings into a slice of exactly its
// length; an empty array is an empty, non-nil slice, as encoding/json
// makes it.
func (d *strs) stringList(raw []byte) ([]string, bool) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, false
	}
	n := 0
	if !fastElements(raw, func(e []byte) bool { _, ok := plainString(e); n++; return ok }) {
		return nil, false
	}
	out := make([]string, 0, n)
	fastElements(raw, func(e []byte) bool { s, _ := plainString(e); out = append(out, d.of(s)); return true })
	return out, true
}

// scope decodes a Scope member as Scope.UnmarshalJSON does; null is its
// error, left to the slow path.
func (d *strs) scope(raw []byte, dst *Scope) bool {
	v, ok := d.stringList(raw)
	if ok {
		*dst = v
	}
	return ok
}

// object decodes a member holding an object with f; null leaves the
// target unchanged, as for a struct.
func object(raw []byte, f func(name, raw []byte) bool) bool {
	if isNull(raw) {
		return true
	}
	return len(raw) > 0 && raw[0] == '{' && fastMembers(raw, f)
}

// decodeFast reads r from data, a valid JSON object, when it can do so
// exactly as encoding/json would. The strings share one copy of the
// request, which a Service drops with it.
func (r *RedemptionRequest) decodeFast(data []byte) bool {
	if r.AgentPass != (AgentPass{}) || r.Authority != "" || r.User != (User{}) || r.HarnessProof != nil ||
		r.RequestedScope != nil || r.InitializationMethods != nil {
		return false // decoding merges into what is there: left to encoding/json
	}
	d := &strs{doc: data, shared: string(data)}
	var out RedemptionRequest
	ok := fastMembers(data, func(name, raw []byte) bool {
		switch string(name) {
		case "agentpass":
			return object(raw, func(name, raw []byte) bool {
				switch string(name) {
				case "type":
					return d.passType(raw, &out.AgentPass.Type)
				case "value":
					return d.str(raw, &out.AgentPass.Value)
				}
				return unknownMember(name, "type", "value")
			})
		case "authority":
			return d.str(raw, &out.Authority)
		case "user":
			return object(raw, func(n, r []byte) bool { return d.userMember(&out.User, n, r) })
		case "harness_proof":
			if isNull(raw) {
				out.HarnessProof = nil
				return true
			}
			if out.HarnessProof == nil {
				out.HarnessProof = new(JWTContainer)
			}
			p := out.HarnessProof
			return object(raw, func(n, r []byte) bool { return d.jwtMember(p, n, r) })
		case "requested_scope":
			return d.scope(raw, &out.RequestedScope)
		case "initialization_methods":
			if isNull(raw) {
				out.InitializationMethods = nil
				return true
			}
			v, ok := d.stringList(raw)
			out.InitializationMethods = v
			return ok
		}
		return unknownMember(name, "agentpass", "authority", "user", "harness_proof", "requested_scope", "initialization_methods")
	})
	if ok {
		*r = out
	}
	return ok
}

// The members of the nested objects. Each is called from a function
// literal written at its call, which stays on the stack; a method that
// returned the literal would allocate it.

func (d *strs) userMember(u *User, name, raw []byte) bool {
	if string(name) == "email" {
		return d.str(raw, &u.Email)
	}
	return unknownMember(name, "email")
}

func (d *strs) jwtMember(c *JWTContainer, name, raw []byte) bool {
	if string(name) == "jwt" {
		return d.str(raw, &c.JWT)
	}
	return unknownMember(name, "jwt")
}

// decodeFast reads r from data, a valid JSON object, when it can do so
// exactly as encoding/json would. Each string is its own allocation: a
// Service keeps several of them with the delegation, and must not keep the
// whole answer with them. The mission, rarely more than a few strings, is
// decoded by encoding/json.
func (r *ValidationResponse) decodeFast(data []byte) bool {
	if r.AuthorizationID != "" || r.User != (User{}) || r.Agent != (Agent{}) || r.Scope != nil || r.Type != "" ||
		r.DestinationURL != "" || r.Cnf != nil || r.Task != nil || r.AuthorizationExpiresAt != nil || r.Harness != nil || r.Mission != nil {
		return false
	}
	d := &strs{}
	var out ValidationResponse
	// The members an answer carries as pointers, in one allocation
	// instead of one each.
	parts := new(struct {
		cnf     Cnf
		task    Task
		exp     time.Time
		harness HarnessRef
		mission MissionInfo
	})
	ok := fastMembers(data, func(name, raw []byte) bool {
		switch string(name) {
		case "authorization_id":
			return d.str(raw, &out.AuthorizationID)
		case "user":
			return object(raw, func(n, r []byte) bool { return d.userMember(&out.User, n, r) })
		case "agent":
			return object(raw, func(name, raw []byte) bool {
				if string(name) == "id" {
					return d.str(raw, &out.Agent.ID)
				}
				return unknownMember(name, "id")
			})
		case "scope":
			return d.scope(raw, &out.Scope)
		case "type":
			return d.passType(raw, &out.Type)
		case "destination_url":
			return d.str(raw, &out.DestinationURL)
		case "cnf":
			if !member(raw, &out.Cnf, &parts.cnf) {
				return true // null
			}
			c := out.Cnf
			return object(raw, func(name, raw []byte) bool {
				if string(name) == "jwk" {
					c.JWK = append(c.JWK[:0], raw...) // json.RawMessage's UnmarshalJSON, null included
					return true
				}
				return unknownMember(name, "jwk")
			})
		case "task":
			if !member(raw, &out.Task, &parts.task) {
				return true // null
			}
			t := out.Task
			return object(raw, func(n, r []byte) bool { return d.taskMember(t, n, r) })
		case "authorization_expires_at":
			if !member(raw, &out.AuthorizationExpiresAt, &parts.exp) {
				return true // null
			}
			return len(raw) > 0 && raw[0] == '"' && out.AuthorizationExpiresAt.UnmarshalJSON(raw) == nil
		case "harness":
			if !member(raw, &out.Harness, &parts.harness) {
				return true // null
			}
			h := out.Harness
			return object(raw, func(name, raw []byte) bool {
				switch string(name) {
				case "id":
					return d.str(raw, &h.ID)
				case "extensions":
					return h.Extensions.UnmarshalJSON(raw) == nil // lenient; null included
				}
				return unknownMember(name, "id", "extensions")
			})
		case "mission":
			if !member(raw, &out.Mission, &parts.mission) {
				return true // null
			}
			m := out.Mission
			return object(raw, func(n, r []byte) bool { return d.missionMember(m, n, r) })
		}
		return unknownMember(name, "authorization_id", "user", "agent", "scope", "type", "destination_url", "cnf", "task",
			"authorization_expires_at", "harness", "mission")
	})
	if ok {
		*r = out
	}
	return ok
}

// decodeFast reads r from data, a valid JSON object, when it can do so
// exactly as encoding/json would: the answer every bearer redemption gets.
func (r *BearerTokenResponse) decodeFast(data []byte) bool {
	if r.BearerToken != "" || r.Scope != nil || r.ExpiresIn != nil || r.TokenType != "" {
		return false
	}
	d := &strs{}
	var out BearerTokenResponse
	var secs int64
	ok := fastMembers(data, func(name, raw []byte) bool {
		switch string(name) {
		case "bearer_token":
			return d.str(raw, &out.BearerToken)
		case "scope":
			return d.scope(raw, &out.Scope)
		case "expires_in":
			if isNull(raw) {
				out.ExpiresIn = nil
				return true
			}
			out.ExpiresIn = &secs
			return int64Member(raw, &secs)
		case "token_type":
			switch string(raw) {
			case `"DPoP"`:
				out.TokenType = "DPoP"
				return true
			case `"Bearer"`:
				out.TokenType = "Bearer"
				return true
			}
			return d.str(raw, &out.TokenType)
		}
		return unknownMember(name, "bearer_token", "scope", "expires_in", "token_type")
	})
	if ok {
		*r = out
	}
	return ok
}

// mission decodes a mission's scalar members; its stages, ceiling and
// actors, present only for staged and delegated missions, are decoded by
// encoding/json.
func (d *strs) missionMember(m *MissionInfo, name, raw []byte) bool {
	switch string(name) {
	case "id":
		return d.str(raw, &m.ID)
	case "state":
		if string(raw) == `"active"` {
			m.State = MissionActive
			return true
		}
		s := string(m.State)
		ok := d.str(raw, &s)
		m.State = MissionState(s)
		return ok
	case "version":
		return int64Member(raw, &m.Version)
	case "stage":
		return d.str(raw, &m.Stage)
	case "parent":
		return d.str(raw, &m.Parent)
	case "history_head":
		return d.str(raw, &m.HistoryHead)
	case "stages":
		return json.Unmarshal(raw, &m.Stages) == nil
	case "ceiling":
		return json.Unmarshal(raw, &m.Ceiling) == nil
	case "act":
		return json.Unmarshal(raw, &m.Act) == nil
	}
	return unknownMember(name, "id", "state", "version", "stage", "stages", "ceiling", "parent", "act", "history_head")
}

// int64Member decodes an integer member of up to 18 digits, the sizes a
// version takes; anything else is left to encoding/json.
func int64Member(raw []byte, dst *int64) bool {
	if isNull(raw) {
		return true
	}
	neg := len(raw) > 0 && raw[0] == '-'
	digits := raw
	if neg {
		digits = raw[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return false
	}
	var v int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	*dst = v
	return true
}

func (d *strs) taskMember(t *Task, name, raw []byte) bool {
	switch string(name) {
	case "id":
		return d.str(raw, &t.ID)
	case "description":
		return d.str(raw, &t.Description)
	case "class":
		return d.str(raw, &t.Class)
	case "attested":
		switch string(raw) {
		case "true":
			t.Attested = true
		case "false":
			t.Attested = false
		case "null":
		default:
			return false
		}
		return true
	case "attestation":
		if isNull(raw) {
			t.Attestation = nil
			return true
		}
		if t.Attestation == nil {
			t.Attestation = new(JWTContainer)
		}
		a := t.Attestation
		return object(raw, func(n, r []byte) bool { return d.jwtMember(a, n, r) })
	}
	return unknownMember(name, "id", "description", "class", "attested", "attestation")
}

// appendPlainString appends s as a JSON string when encoding/json writes
// it unescaped (printable ASCII other than the quote, the backslash and
// its HTML escapes) and reports whether it did.
func appendPlainString(b []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return b, false
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), true
}
