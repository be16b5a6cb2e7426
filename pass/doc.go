// Package pass is the wire format of AgentPass: a Go type for every JSON
// document, the [Scope] type, version checks, and the wire error
// {"error":{"code","message"}} with its mapping to Go errors.
//
// # Overview
//
// Decode a peer's document with [Decode], which also validates it; answer
// a peer with an [*Error]; read a peer's error with [ErrorFromResponse].
// The package performs no I/O, and every other package of this module
// speaks to peers through it, so the rules of the wire live in one place.
//
// # Usage
//
// A server decodes a request body and a client decodes a response with the
// same call:
//
//	var req pass.IssuanceRequest
//	if err := pass.Decode(body, &req); err != nil {
//		// errors.Is(err, pass.ErrInvalidDocument); a *pass.FieldError
//		// names the member, e.g. `pass: invalid user.email: ...`
//	}
//
// A server answers with a wire error, and a client turns a peer's error
// back into one that matches the package's sentinels:
//
//	e := pass.Fail(pass.CodeAgentPassConsumed, "already used") // 409, from the code table
//	body := e.Body() // write as JSON with e.Status
//
//	err := pass.ErrorFromResponse(resp.StatusCode, respBody)
//	if errors.Is(err, pass.ErrConsumed) { ... }
//
// # Decoding rules
//
// Decoding is tolerant of what the specification allows and strict about
// what it requires:
//
//   - Unknown members are ignored and a higher minor version is accepted,
//     so newer peers and extensions interoperate.
//   - An unknown major version ([ErrUnsupportedVersion]), a missing member,
//     an http:// URL or a malformed e-mail address make [Decode] fail, so a
//     hostile or broken peer's document is refused before it is used.
//   - Each document's Validate method names the offending JSON member (see
//     [FieldError]), so a server can answer 400 with a precise message.
//
// The package supports AgentPass specification version 0.1 (see [Version])
// and the unmerged hardening drafts described in the module's README, whose
// extra members plain v0.1 peers ignore.
package pass
