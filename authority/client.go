package authority

import (
	"github.com/agentpass-go/agentpass/internal/netguard"
)

// ErrForbiddenAddress: a call to a Service's available_scopes endpoint, or
// a fetch of its configuration, would connect to a loopback, private or
// otherwise non-public address (see Config.InsecureAllowPrivateNetworks).
// Nothing was sent. It is the same value as discovery.ErrForbiddenAddress.
var ErrForbiddenAddress = netguard.ErrForbiddenAddress
