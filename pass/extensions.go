package pass

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// extensionPrefix is the namespace of this SDK's protocol extensions. The
// URIs are identifiers, compared as exact strings and never dereferenced.
const extensionPrefix = "https://agentpass-go.github.io/ext/"

// The extensions this SDK defines. Each is advertised in a configuration's
// extensions object (Authorities and Services) or in harness.extensions of
// an issuance request (Harnesses); a peer that does not advertise one gets
// plain v0.1 behaviour.
const (
	// ExtHolderBinding: hardened holder binding. A Harness that lists it
	// proves its key when reading an approved status and sends proofs with
	// htm, htu and aph; a pass requested that way is never redeemable with
	// a plain v0.1 proof.
	ExtHolderBinding = extensionPrefix + "holder-binding"
	// ExtMission: the mission record behind authorization_id.
	ExtMission = extensionPrefix + "mission"
	// ExtCompile: task to scope compilation.
	ExtCompile = extensionPrefix + "compile"
	// ExtStages: staged execution.
	ExtStages = extensionPrefix + "stages"
	// ExtDelegation: sub-agent delegation.
	ExtDelegation = extensionPrefix + "delegation"
	// ExtEvents: event-driven revocation with Security Event Tokens.
	ExtEvents = extensionPrefix + "events"
)

// ProofHeader is the request header carrying a holder proof signed with the
// harness.cnf key: a harness proof with aud = the Authority identifier, htm
// and htu the request's method and URL, and aph the hash of what the
// request names (the request id for an issuance status, the mission id for
// a mission call). A Harness that lists ExtHolderBinding sends it to read
// its approved status, so whoever learns the status URL still cannot take
// the pass; the mission endpoints take one too.
const ProofHeader = "AgentPass-Proof"

// extensionMajor is the major version of the extensions this SDK
// implements; an entry with another major is ignored.
const extensionMajor = 1

// maxExtensions bounds how many entries an extensions object may carry
// before the rest are ignored, and maxExtensionURI the length of a URI.
const (
	maxExtensions   = 32
	maxExtensionURI = 256
)

// Extension is one entry of an extensions object: its version, its
// endpoints (each an absolute https URL), and any other members, which the
// code of that extension reads with [Extension.Member].
type Extension struct {
	// Version is "major.minor"; a higher minor than ours is accepted.
	Version string
	// Endpoints maps endpoint names to absolute https URLs.
	Endpoints map[string]string
	// members holds every other member, unparsed.
	members map[string]json.RawMessage
}

// Member decodes the extension-specific member name into v and reports
// whether it was present and of v's type.
func (e Extension) Member(name string, v any) bool {
	raw, ok := e.members[name]
	return ok && json.Unmarshal(raw, v) == nil
}

// WithMember returns a copy of e carrying the extension-specific member
// name with the JSON encoding of v.
func (e Extension) WithMember(name string, v any) (Extension, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return e, fmt.Errorf("pass: extension member %s: %w", name, err)
	}
	m := maps.Clone(e.members)
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	m[name] = b
	e.members = m
	e.Endpoints = maps.Clone(e.Endpoints)
	return e, nil
}

// IgnoredExtension names an entry of an extensions object that was dropped
// while parsing, and why, so the receiver can log it.
type IgnoredExtension struct {
	URI    string
	Reason string
}

// Extensions is the extensions member of an Authority or Service
// configuration: the extensions the party implements, keyed by URI.
//
// Parsing never fails the document that carries it: a member that is not
// an object means no extensions, and an entry that is not an object, has no
// valid version, has another major version, or has an endpoint that is not
// an absolute https URL is dropped (and listed by Ignored), so that a
// broken extension leaves the v0.1 protocol working. The zero value holds
// no extensions.
type Extensions struct {
	entries map[string]Extension
	ignored []IgnoredExtension
}

// Has reports whether the extension uri is present.
func (x Extensions) Has(uri string) bool {
	_, ok := x.entries[uri]
	return ok
}

// Get returns the extension uri.
func (x Extensions) Get(uri string) (Extension, bool) {
	e, ok := x.entries[uri]
	return e, ok
}

// Endpoint returns the endpoint name of extension uri, or "".
func (x Extensions) Endpoint(uri, name string) string {
	return x.entries[uri].Endpoints[name]
}

// URIs returns the URIs present, sorted.
func (x Extensions) URIs() []string {
	return slices.Sorted(maps.Keys(x.entries))
}

// Ignored lists the entries dropped while parsing.
func (x Extensions) Ignored() []IgnoredExtension { return slices.Clone(x.ignored) }

// Len returns the number of extensions present.
func (x Extensions) Len() int { return len(x.entries) }

// With returns a copy of x holding e under uri. It refuses an entry that
// parsing would drop, so that what a party advertises is what its peers
// read.
func (x Extensions) With(uri string, e Extension) (Extensions, error) {
	if reason := checkExtension(uri, e); reason != "" {
		return x, fmt.Errorf("pass: extension %s: %s", uri, reason)
	}
	m := maps.Clone(x.entries)
	if m == nil {
		m = map[string]Extension{}
	}
	e.Endpoints = maps.Clone(e.Endpoints)
	e.members = maps.Clone(e.members)
	m[uri] = e
	return Extensions{entries: m}, nil
}

// MarshalJSON encodes the extensions as an object keyed by URI.
func (x Extensions) MarshalJSON() ([]byte, error) {
	out := make(map[string]map[string]any, len(x.entries))
	for uri, e := range x.entries {
		m := make(map[string]any, len(e.members)+2)
		for k, v := range e.members {
			m[k] = v
		}
		m["version"] = e.Version
		if len(e.Endpoints) > 0 {
			m["endpoints"] = e.Endpoints
		}
		out[uri] = m
	}
	return json.Marshal(out)
}

// UnmarshalJSON parses an extensions object leniently (see [Extensions]);
// it never returns an error.
func (x *Extensions) UnmarshalJSON(b []byte) error {
	*x = ParseExtensions(b)
	return nil
}

// IsZero reports whether x holds no extensions, so that encoding/json's
// omitzero leaves the member out.
func (x Extensions) IsZero() bool { return len(x.entries) == 0 }

// ParseExtensions parses the JSON value of an extensions member with the
// lenient rules of [Extensions].
func ParseExtensions(b []byte) Extensions {
	var x Extensions
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		if len(b) > 0 && string(b) != "null" {
			x.ignored = append(x.ignored, IgnoredExtension{Reason: "extensions is not a JSON object"})
		}
		return x
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		x.ignored = append(x.ignored, IgnoredExtension{Reason: "extensions is not a JSON object"})
		return x
	}
	for _, uri := range slices.Sorted(maps.Keys(raw)) {
		if len(x.entries) >= maxExtensions {
			x.ignored = append(x.ignored, IgnoredExtension{URI: truncate(uri, maxExtensionURI), Reason: "too many extensions"})
			continue
		}
		e, reason := parseExtension(uri, raw[uri])
		if reason != "" {
			x.ignored = append(x.ignored, IgnoredExtension{URI: truncate(uri, maxExtensionURI), Reason: reason})
			continue
		}
		if x.entries == nil {
			x.entries = map[string]Extension{}
		}
		x.entries[uri] = e
	}
	return x
}

func parseExtension(uri string, b json.RawMessage) (Extension, string) {
	var members map[string]json.RawMessage
	if b = bytes.TrimSpace(b); len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &members) != nil {
		return Extension{}, "entry is not a JSON object"
	}
	var e Extension
	if v, ok := members["version"]; !ok || json.Unmarshal(v, &e.Version) != nil {
		return Extension{}, "missing or non-string version"
	}
	if v, ok := members["endpoints"]; ok {
		if json.Unmarshal(v, &e.Endpoints) != nil {
			return Extension{}, "endpoints is not an object of strings"
		}
	}
	delete(members, "version")
	delete(members, "endpoints")
	if len(members) > 0 {
		e.members = members
	}
	if reason := checkExtension(uri, e); reason != "" {
		return Extension{}, reason
	}
	return e, ""
}

// checkExtension returns why an entry must be dropped, or "".
func checkExtension(uri string, e Extension) string {
	if uri == "" || len(uri) > maxExtensionURI || !strings.Contains(uri, ":") {
		return "the key is not a URI"
	}
	major, _, err := parseVersion(e.Version)
	if err != nil {
		return "invalid version"
	}
	if major != extensionMajor {
		return fmt.Sprintf("major version %d is not implemented", major)
	}
	for _, name := range slices.Sorted(maps.Keys(e.Endpoints)) {
		if err := CheckHTTPSURL(e.Endpoints[name]); err != nil {
			return "endpoint " + truncate(name, 64) + " is not an absolute https URL"
		}
	}
	return ""
}

// HarnessExtensions parses harness.extensions of an issuance request: the
// extension URIs a Harness speaks. Like [Extensions] it never fails the
// request; entries that are not strings, or not URIs, are dropped, and at
// most 32 are kept.
type HarnessExtensions []string

// UnmarshalJSON parses leniently; it never returns an error.
func (h *HarnessExtensions) UnmarshalJSON(b []byte) error {
	*h = nil
	var raw []json.RawMessage
	if json.Unmarshal(b, &raw) != nil {
		return nil
	}
	for _, r := range raw {
		var s string
		if json.Unmarshal(r, &s) != nil || s == "" || len(s) > maxExtensionURI || !strings.Contains(s, ":") {
			continue
		}
		if len(*h) < maxExtensions && !slices.Contains(*h, s) {
			*h = append(*h, s)
		}
	}
	return nil
}

// Has reports whether the Harness listed uri.
func (h HarnessExtensions) Has(uri string) bool { return slices.Contains(h, uri) }

// Equal reports whether x and y hold the same extensions with the same
// members (the ignored entries do not count). go-cmp uses it.
func (x Extensions) Equal(y Extensions) bool {
	if len(x.entries) != len(y.entries) {
		return false
	}
	for uri, a := range x.entries {
		if b, ok := y.entries[uri]; !ok || !a.Equal(b) {
			return false
		}
	}
	return true
}

// Equal reports whether e and f have the same version, endpoints and
// members. go-cmp uses it.
func (e Extension) Equal(f Extension) bool {
	return e.Version == f.Version && maps.Equal(e.Endpoints, f.Endpoints) &&
		maps.EqualFunc(e.members, f.members, func(p, q json.RawMessage) bool { return bytes.Equal(p, q) })
}
