package deploy_test

import (
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// A kit refuses an Authority it cannot serve, and a user that is not an
// e-mail address, before starting anything.
func TestNewKitRefusals(t *testing.T) {
	for name, o := range map[string]deploy.KitOptions{
		"port":         {Authority: &authority.Config{Identifier: "https://idp.test:8443", TrustMode: pass.TrustEnterprise}},
		"service host": {Authority: &authority.Config{Identifier: "https://app.test", TrustMode: pass.TrustEnterprise}},
		"user":         {User: "not-an-address"},
	} {
		k, err := deploy.NewKit(o)
		if err == nil {
			k.Close()
			t.Errorf("%s: no error", name)
		} else if !strings.HasPrefix(err.Error(), "deploy: ") {
			t.Errorf("%s: %v, want a deploy error", name, err)
		}
	}
}
