// Package pass is the wire format of AgentPass v0.1: a Go type for every JSON
// document of the specification, the Scope type with its wildcard rules,
// version checks, and the structured error body {"error":{"code","message"}}
// with its mapping to Go errors.
//
// # Overview
//
// Every other package of this module speaks to peers through these types, so
// the rules of the wire live in one place:
//
//   - Decoding is tolerant of what the specification allows (unknown members
//     are ignored, a higher minor version is accepted) and strict about what it
//     requires (an unknown major version, a missing member, an http:// URL or a
//     malformed e-mail address make [Decode] fail).
//   - Each document has a Validate method whose errors name the offending JSON
//     member (see [FieldError]), so a server can answer 400 with a precise
//     message and a client can refuse a hostile peer's document.
//   - [Error] is the wire error; it carries the HTTP status and matches the
//     package's sentinel errors with [errors.Is].
//
// # Usage
//
// A server decodes a request body and a client decodes a response with the
// same call:
//
//	var req pass.IssuanceRequest
//	if err := pass.Decode(body, &req); err != nil {
//		// err names the member, e.g. `pass: invalid user.email: ...`
//	}
//
// The package performs no I/O. It supports AgentPass specification version
// 0.1 (see [Version]) and the unmerged hardening drafts described in the
// module's README, whose extra members plain v0.1 peers ignore.
package pass
