package sandbox_test

import (
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/agentpass-go/agentpass/authority/console"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
)

// InsecureLoopback signs in loopback clients only.
func TestInsecureLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:5000": true, "[::1]:5000": true, "127.9.9.9:1": true,
		"192.0.2.1:5000": false, "[2001:db8::1]:443": false, "10.0.0.1:80": false, "": false, "garbage": false,
	} {
		r := httptest.NewRequest("GET", "https://idp.corp.test/corp/approvals/", nil)
		r.RemoteAddr = addr
		id, err := sandbox.InsecureLoopback{}.Authenticate(r)
		if ok && (err != nil || id.Subject != sandbox.DevnetOperator) {
			t.Errorf("%q: %+v %v, want the devnet operator", addr, id, err)
		}
		if !ok && (!errors.Is(err, console.ErrUnauthenticated) || id.Subject != "") {
			t.Errorf("%q: %+v %v, want ErrUnauthenticated", addr, id, err)
		}
	}
}
