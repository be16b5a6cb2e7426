// Package netguard keeps protocol fetches away from non-public addresses
// (gap G-27). Services fetch configuration URLs chosen by any e-mail domain's
// owner, and Authorities call available_scopes URLs chosen by whoever
// controls a service origin, so both refuse loopback, private, link-local
// and other special-purpose destinations. The check runs when connecting,
// after name resolution, so DNS rebinding cannot get around it.
package netguard

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// nonPublic lists the ranges refused besides those netip classifies
// (loopback, private, link-local, multicast, unspecified).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
}

// nat64 is the well-known NAT64 prefix, whose addresses embed an IPv4 one.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// PublicAddr reports whether a is a globally routable unicast address.
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// Guard refuses connections to non-public addresses, reporting them with
// Err (each package keeps its own sentinel error).
type Guard struct {
	Err error
}

// CheckAddr returns an error wrapping g.Err unless address ("ip:port") is
// public.
func (g Guard) CheckAddr(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", g.Err, address)
	}
	if !PublicAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s", g.Err, ap.Addr())
	}
	return nil
}

// DialFunc is the shape of http.Transport.DialContext.
type DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// Dial wraps a caller's dialer: the connection is closed unless its remote
// address is public. Nothing has been sent on it yet.
func (g Guard) Dial(inner DialFunc) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := inner(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if err := g.CheckAddr(conn.RemoteAddr().String()); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
}

// Protect installs the guard on tr (which the caller owns, typically a
// clone): a caller's DialContext and DialTLSContext are wrapped, otherwise a
// dialer with the given timeout checks each address before connecting.
func (g Guard) Protect(tr *http.Transport, dialTimeout time.Duration) {
	if inner := tr.DialContext; inner != nil {
		tr.DialContext = g.Dial(inner)
	} else {
		d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second,
			Control: func(_, address string, _ syscall.RawConn) error { return g.CheckAddr(address) }}
		tr.DialContext = d.DialContext
	}
	if inner := tr.DialTLSContext; inner != nil {
		tr.DialTLSContext = g.Dial(inner)
	}
	//lint:ignore SA1019 a deprecated dialer set by the caller would bypass the check.
	tr.Dial, tr.DialTLS = nil, nil
}
