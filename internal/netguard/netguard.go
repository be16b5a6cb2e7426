// Package netguard keeps protocol calls away from non-public addresses.
//
// # Overview
//
// [Protect] installs the guard on an http.Transport; a connection to a
// loopback, private, link-local or other special-purpose address then fails
// with [ErrForbiddenAddress] before it is attempted. Services fetch
// configuration URLs chosen by any e-mail domain's owner, and Authorities
// call available_scopes URLs chosen by whoever controls a service origin, so
// every role needs it.
//
// # Usage
//
//	tr := base.Clone()
//	netguard.Protect(tr, 5*time.Second)
//	client := &http.Client{Transport: tr}
//	_, err := client.Get(url) // errors.Is(err, netguard.ErrForbiddenAddress)
//
// # Why at dial time
//
// The check runs at dial time, after name resolution and before the TCP
// connection is attempted, for every address tried (Happy Eyeballs
// included): a check of the host name before resolution is defeated by DNS
// rebinding, and a check after connecting would let a caller time
// connection attempts to internal hosts (a port-scan oracle).
package netguard

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

// ErrForbiddenAddress is the one error for "destination address not
// allowed". Every public package re-exports this same value, so errors.Is
// holds whichever layer refused the connection.
var ErrForbiddenAddress = errors.New("agentpass: destination address not allowed")

// nonPublic lists the ranges refused besides those netip classifies
// (loopback, private, link-local, multicast, unspecified). An IPv6 address
// must also be global unicast (2000::/3), which already excludes several
// listed ranges; they stay listed to say what is refused and why.
//
// Ranges whose addresses embed an IPv4 address are refused whole, except
// the well-known NAT64 prefix (see nat64): IPv4-compatible (::/96, also
// covering :: and ::1), IPv4-translated (::ffff:0:0:0/96), local-use NAT64
// (64:ff9b:1::/48), 6to4 (2002::/16) and Teredo (2001::/32, within the IETF
// protocol assignments 2001::/23). All are deprecated, local or
// special-purpose, so no legitimate peer needs them, and refusing them
// whole avoids decoding each embedding (6to4 and Teredo relays would reach
// whatever IPv4 address is embedded, a private one included).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast (deprecated)
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated)
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (SIIT)
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments
	netip.MustParsePrefix("2001::/32"),       // Teredo
	netip.MustParsePrefix("2001:2::/48"),     // benchmarking
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4
	netip.MustParsePrefix("3fff::/20"),       // documentation
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
}

// globalUnicast6 is the IPv6 global unicast space.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// nat64 is the well-known NAT64 prefix: a public NAT64 gateway reaches the
// embedded IPv4 address, so that address is what gets classified.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// PublicAddr reports whether a is a globally routable unicast address.
// IPv4-mapped addresses (::ffff:a.b.c.d) and well-known NAT64 addresses
// are classified by the IPv4 address they embed.
func PublicAddr(a netip.Addr) bool {
	a = a.WithZone("").Unmap()
	if nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() ||
		(a.Is6() && !globalUnicast6.Contains(a)) {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// CheckAddr returns an error wrapping ErrForbiddenAddress unless address
// ("ip:port") is public.
func CheckAddr(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address", ErrForbiddenAddress, address)
	}
	if !PublicAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
	}
	return nil
}

// control is a net.Dialer.ControlContext hook: it runs once per address
// tried, after resolution and before the connect system call.
func control(_ context.Context, _, address string, _ syscall.RawConn) error {
	return CheckAddr(address)
}

// Dialer returns a dialer that refuses non-public addresses before
// connecting.
func Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, ControlContext: control}
}

// DialFunc is the shape of http.Transport.DialContext.
type DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// Dial wraps a caller's dialer, whose name resolution and connection this
// package cannot hook. An IP literal is checked before dialing; otherwise
// the connection is closed, before anything is sent on it, unless its remote
// address is an IP address and public. Only a caller who replaced the
// dialer (for example to map host names in tests) is exposed to the timing
// of refused connects.
//
// A tunnelling dialer (SOCKS5, HTTP CONNECT, SSH) returns a connection
// whose remote address is the tunnel's while the tunnel reaches any
// destination, so this check cannot protect it: internal/outbound refuses
// such dialers instead.
func Dial(inner DialFunc) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil && !PublicAddr(ip) {
				return nil, fmt.Errorf("%w: %s", ErrForbiddenAddress, ip)
			}
		}
		conn, err := inner(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if err := checkRemote(conn.RemoteAddr()); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
}

// checkRemote is CheckAddr for a connection's remote address, which a
// caller's connection may report as nil (an interface or a pointer) or as
// something other than an IP address: both are refused.
func checkRemote(a net.Addr) error {
	switch a := a.(type) {
	case nil:
		return fmt.Errorf("%w: connection without a remote address", ErrForbiddenAddress)
	case *net.TCPAddr:
		if a == nil {
			return fmt.Errorf("%w: connection without a remote address", ErrForbiddenAddress)
		}
		return CheckAddr(a.AddrPort().String())
	case *net.UDPAddr:
		if a == nil {
			return fmt.Errorf("%w: connection without a remote address", ErrForbiddenAddress)
		}
		return CheckAddr(a.AddrPort().String())
	}
	return CheckAddr(a.String())
}

// Protect installs the guard on tr, which the caller owns (typically a
// clone): a caller's dialers are wrapped with [Dial]; otherwise a [Dialer]
// with dialTimeout checks each address before connecting. The deprecated
// Dial and DialTLS fields are moved to their context forms, wrapped, so
// nothing bypasses the check.
func Protect(tr *http.Transport, dialTimeout time.Duration) {
	//lint:ignore SA1019 a deprecated dialer set by the caller is honoured, guarded.
	dial, dialTLS := tr.Dial, tr.DialTLS
	if tr.DialContext == nil && dial != nil {
		tr.DialContext = func(_ context.Context, network, addr string) (net.Conn, error) { return dial(network, addr) }
	}
	if tr.DialTLSContext == nil && dialTLS != nil {
		tr.DialTLSContext = func(_ context.Context, network, addr string) (net.Conn, error) { return dialTLS(network, addr) }
	}
	if inner := tr.DialContext; inner != nil {
		tr.DialContext = Dial(inner)
	} else {
		tr.DialContext = Dialer(dialTimeout).DialContext
	}
	if inner := tr.DialTLSContext; inner != nil {
		tr.DialTLSContext = Dial(inner)
	}
	//lint:ignore SA1019 cleared so that only the guarded forms remain.
	tr.Dial, tr.DialTLS = nil, nil
}
