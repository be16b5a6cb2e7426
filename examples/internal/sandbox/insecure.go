package sandbox

import (
	"errors"
	"net"
	"net/http"

	"github.com/agentpass-go/agentpass/authority/console"
)

// DevnetOperator is the identity InsecureLoopback signs everyone in as, so
// the devnet's decisions say plainly that nobody logged in.
const DevnetOperator = "human:devnet-operator (no login)"

// InsecureLoopback is the devnet's console.Authenticator: it signs in every
// client that connects from a loopback address as DevnetOperator, who may
// decide for every user, and refuses every other client. It has no login
// at all, so it must never serve anything but a development network on
// the operator's own machine.
type InsecureLoopback struct{}

var errNotLoopback = errors.New("sandbox: InsecureLoopback refuses a non-loopback client")

// Authenticate accepts only loopback clients.
func (InsecureLoopback) Authenticate(r *http.Request) (console.Identity, error) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return console.Identity{}, errors.Join(console.ErrUnauthenticated, errNotLoopback)
	}
	return console.Identity{Subject: DevnetOperator, Name: "devnet operator (no login)"}, nil
}

// MayDecide lets the devnet operator decide for everyone.
func (InsecureLoopback) MayDecide(console.Identity, string) bool { return true }
