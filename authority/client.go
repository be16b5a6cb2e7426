package authority

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
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
		if inner := tr.DialContext; inner != nil {
			tr.DialContext = checkedDial(inner)
		} else {
			d := &net.Dialer{Timeout: DefaultScopesTimeout, KeepAlive: 30 * time.Second, Control: dialControl}
			tr.DialContext = d.DialContext
		}
		if inner := tr.DialTLSContext; inner != nil {
			tr.DialTLSContext = checkedDial(inner)
		}
		//lint:ignore SA1019 a deprecated dialer set by the caller would bypass the check.
		tr.Dial, tr.DialTLS = nil, nil
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

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

func checkedDial(inner dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := inner(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if err := checkAddr(conn.RemoteAddr().String()); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
}

func dialControl(_, address string, _ syscall.RawConn) error { return checkAddr(address) }

func checkAddr(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !publicAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s", errForbiddenAddress, address)
	}
	return nil
}

var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("240.0.0.0/4"), netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("64:ff9b::/96"), netip.MustParsePrefix("fc00::/7"),
}

func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}
