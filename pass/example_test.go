package pass_test

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/agentpass-go/agentpass/pass"
)

// A server decodes a request body with one call: unknown members are
// ignored, and a bad member is named in the error.
func ExampleDecode() {
	var req pass.RedemptionRequest
	err := pass.Decode([]byte(`{
		"agentpass": {"type": "bearer_token", "value": "ap_123"},
		"authority": "http://idp.corp.example",
		"user": {"email": "alex@corp.example"},
		"x_future_member": true
	}`), &req)
	var fe *pass.FieldError
	if errors.As(err, &fe) {
		fmt.Println(fe.Field, "-", fe.Reason)
	}
	fmt.Println(errors.Is(err, pass.ErrInvalidDocument))
	// Output:
	// authority - must be an https:// URL
	// true
}

// A configuration with another major version is refused; a higher minor
// version is accepted (§2.2).
func ExampleCheckVersion() {
	fmt.Println(pass.CheckVersion("0.9"))
	err := pass.CheckVersion("1.0")
	fmt.Println(errors.Is(err, pass.ErrUnsupportedVersion))
	// Output:
	// <nil>
	// true
}

// The Service grants the intersection of what the Authority approved and
// what the Harness asked for; "*" means every scope the User holds.
func ExampleScope_Intersect() {
	approved := pass.Scope{"todos:read", "todos:write"}
	requested := pass.Scope{"todos:write", "todos:delete"}
	fmt.Println(approved.Intersect(requested))
	fmt.Println(approved.Intersect(pass.Scope{"todos:delete"}).IsEmpty())

	everything := pass.Scope{"*"}
	userHolds := []string{"todos:read", "todos:write", "todos:delete"}
	fmt.Println(everything.Expand(userHolds).Intersect(requested))
	// Output:
	// [todos:write]
	// true
	// [todos:write todos:delete]
}

// A wire error carries its HTTP status and matches the package's sentinel
// errors, so callers test classes, not code strings.
func ExampleErrorFromResponse() {
	body := []byte(`{"error":{"code":"agentpass_consumed","message":"already used"}}`)
	err := pass.ErrorFromResponse(http.StatusConflict, body)
	fmt.Println(err.Status, err.Code)
	fmt.Println(errors.Is(err, pass.ErrConsumed), errors.Is(err, pass.ErrExpired))
	// Output:
	// 409 agentpass_consumed
	// true false
}

// Enterprise discovery looks up _agentpass.{domain} for the domain of the
// User's address, in lower-case A-label form.
func ExampleEmailDomain() {
	d, _ := pass.EmailDomain("Alex@Bücher.Example")
	fmt.Println("_agentpass." + d)
	// Output:
	// _agentpass.xn--bcher-kva.example
}
