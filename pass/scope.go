package pass

import (
	"bytes"
	"encoding/json"
	"slices"
)

// Wildcard is the scope value meaning "every scope the User holds at the
// Service" (§2.1).
const Wildcard = "*"

// Scope is a list of opaque, Service-defined scope identifiers, always a JSON
// array of strings on the wire. The value [Wildcard] stands for every scope
// the User holds. A nil Scope encodes as [] (never null).
//
// Methods never modify their receiver and return new slices.
type Scope []string

// MarshalJSON encodes a nil Scope as an empty array.
func (s Scope) MarshalJSON() ([]byte, error) {
	if s == nil {
		return []byte("[]"), nil
	}
	// Scope values are nearly always plain ASCII, which encoding/json
	// writes as it is: one allocation instead of its encoder's.
	n := 2 + 3*len(s)
	for _, v := range s {
		n += len(v)
	}
	b := append(make([]byte, 0, n), '[')
	for i, v := range s {
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, ok = appendPlainString(b, v); !ok {
			return json.Marshal([]string(s))
		}
	}
	return append(b, ']'), nil
}

// UnmarshalJSON accepts only a JSON array of strings: a string, an object or
// null is an error rather than an empty scope, so a malformed grant is never
// read as some other grant.
func (s *Scope) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return invalid("scope", "must be an array of strings, not null")
	}
	var v []string
	if err := json.Unmarshal(b, &v); err != nil {
		return invalid("scope", "must be an array of strings")
	}
	if v == nil {
		v = []string{}
	}
	*s = v
	return nil
}

// HasWildcard reports whether s contains [Wildcard].
func (s Scope) HasWildcard() bool { return slices.Contains(s, Wildcard) }

// Has reports whether s literally contains v (no wildcard expansion).
func (s Scope) Has(v string) bool { return slices.Contains(s, v) }

// Allows reports whether s grants v: s contains v, or s contains the wildcard.
func (s Scope) Allows(v string) bool { return s.Has(v) || s.HasWildcard() }

// AllowsAll reports whether s grants every value of want.
func (s Scope) AllowsAll(want ...string) bool {
	for _, w := range want {
		if !s.Allows(w) {
			return false
		}
	}
	return true
}

// Missing returns the values of want that s does not grant, in order.
func (s Scope) Missing(want ...string) []string {
	var m []string
	for _, w := range want {
		if !s.Allows(w) {
			m = append(m, w)
		}
	}
	return m
}

// SubsetOf reports whether every value of s is granted by other. A wildcard in
// s is a subset only of a scope that also holds the wildcard.
func (s Scope) SubsetOf(other Scope) bool {
	if other.HasWildcard() {
		return true
	}
	has := other.contains()
	for _, v := range s {
		if !has(v) {
			return false
		}
	}
	return true
}

// smallScope is the size up to which membership is tested by scanning;
// larger scopes use a set, so that operations on hostile, document-sized
// lists (~10,000 values) stay linear rather than quadratic.
const smallScope = 16

// contains returns a membership test for s: a scan for small scopes, a set
// lookup otherwise.
func (s Scope) contains() func(string) bool {
	if len(s) <= smallScope {
		return s.Has
	}
	set := make(map[string]struct{}, len(s))
	for _, v := range s {
		set[v] = struct{}{}
	}
	return func(v string) bool { _, ok := set[v]; return ok }
}

// Intersect returns the values granted by both s and other, in the order of s
// (or of other when s is the wildcard), without duplicates. The wildcard on one
// side yields the other side; on both sides it yields ["*"]. Expand the
// wildcard first with [Scope.Expand] where concrete values are needed.
func (s Scope) Intersect(other Scope) Scope {
	sw, ow := s.HasWildcard(), other.HasWildcard()
	switch {
	case sw && ow:
		return Scope{Wildcard}
	case sw:
		return other.Dedupe()
	case ow:
		return s.Dedupe()
	}
	if len(s) <= smallScope && len(other) <= smallScope {
		// The common case, one allocation: scans, no membership closure,
		// no deduplicated copy of s.
		out := make(Scope, 0, min(len(s), len(other)))
		for _, v := range s {
			if other.Has(v) && !out.Has(v) {
				out = append(out, v)
			}
		}
		return out
	}
	inOther := other.contains()
	out := Scope{}
	for _, v := range s.Dedupe() {
		if inOther(v) {
			out = append(out, v)
		}
	}
	return out
}

// Dedupe returns s without repeated values, keeping first occurrences in
// order. A nil s yields an empty, non-nil Scope.
func (s Scope) Dedupe() Scope {
	out := make(Scope, 0, len(s))
	if len(s) <= smallScope {
		for _, v := range s {
			if !out.Has(v) {
				out = append(out, v)
			}
		}
		return out
	}
	seen := make(map[string]struct{}, len(s))
	for _, v := range s {
		if _, ok := seen[v]; !ok {
			seen[v] = struct{}{}
			out = append(out, v)
		}
	}
	return out
}

// Expand replaces the wildcard with all, the concrete scopes the User holds,
// and returns the deduplicated result. Without a wildcard it returns s
// deduplicated.
func (s Scope) Expand(all []string) Scope {
	if !s.HasWildcard() {
		return s.Dedupe()
	}
	out := make(Scope, 0, len(all)+len(s))
	for _, v := range s {
		if v != Wildcard {
			out = append(out, v)
		}
	}
	out = append(out, all...)
	return out.Dedupe()
}

// IsEmpty reports whether s grants nothing. An empty intersection is detected
// with Intersect(...).IsEmpty().
func (s Scope) IsEmpty() bool { return len(s) == 0 }

// Equal reports whether s and other hold the same values, ignoring order and
// duplicates.
func (s Scope) Equal(other Scope) bool {
	a, b := s.Dedupe(), other.Dedupe()
	return len(a) == len(b) && a.SubsetOf(b) && b.SubsetOf(a) && a.HasWildcard() == b.HasWildcard()
}

// validate rejects empty scope values, which no Service can define.
func (s Scope) validate(field string) error {
	for _, v := range s {
		if v == "" {
			return invalid(field, "scope values must be non-empty strings")
		}
	}
	return nil
}
