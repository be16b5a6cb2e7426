package authority

import (
	"errors"
	"net/http"

	"github.com/agentpass-go/agentpass/internal/netguard"
)

// errForbiddenAddress: a call to a Service would connect to a loopback,
// private or otherwise non-public address (G-27).
var errForbiddenAddress = errors.New("authority: destination address not allowed")

// scopesClient derives the client that calls Services' available_scopes
// endpoints. The URL comes from a configuration published by whoever
// controls the requested service.origin, so redirects are refused and,
// unless allowPrivate, connections to non-public addresses are refused after
// name resolution (G-27). A Transport that is not an *http.Transport is used
// as given: it is then the caller's job to restrict destinations.
func scopesClient(base *http.Client, allowPrivate bool) *http.Client {
	var rt http.RoundTripper
	if base != nil {
		rt = base.Transport
	}
	var tr *http.Transport
	switch t := rt.(type) {
	case nil:
		tr = http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil // a library reads no environment variables
	case *http.Transport:
		tr = t.Clone()
	}
	if tr != nil && !allowPrivate {
		netguard.Guard{Err: errForbiddenAddress}.Protect(tr, DefaultScopesTimeout)
	}
	c := &http.Client{Timeout: DefaultScopesTimeout}
	if base != nil {
		*c = *base
		c.Jar = nil
	}
	if tr != nil {
		c.Transport = tr
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}
