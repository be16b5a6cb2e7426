package harness

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode"

	"github.com/agentpass-go/agentpass/pass"
)

// Event names a step reported through Config.Progress.
type Event string

// Events, in the order an Acquire and a redemption report them.
const (
	// EventServiceDiscovered: the Service's configuration was found
	// (Service is set).
	EventServiceDiscovered Event = "service_discovered"
	// EventAuthorityResolved: the Service answered the resolution (Branch
	// and Options are set).
	EventAuthorityResolved Event = "authority_resolved"
	// EventAuthorityChosen: the Authority to ask was chosen and its
	// configuration checked (Authority is set).
	EventAuthorityChosen Event = "authority_chosen"
	// EventRequestCreated: the Authority accepted the issuance request
	// (RequestID, and ApprovalURL when the Authority offers one).
	EventRequestCreated Event = "request_created"
	// EventPending: the request waits for a decision (ApprovalURL when
	// the Authority offers one). Reported once per request, not per poll.
	EventPending Event = "pending"
	// EventProposal: the Authority's scope proposal for the pending
	// request arrived (Proposal is set; it speaks only of the scopes
	// Request.Scope named). Reported once per request.
	EventProposal Event = "proposal"
	// EventApproved, EventDenied, EventExpired, EventCanceled: the request
	// reached a terminal status (Reason for denied).
	EventApproved Event = "approved"
	EventDenied   Event = "denied"
	EventExpired  Event = "expired"
	EventCanceled Event = "canceled"
	// EventRedeemed: the Service accepted the pass (Scope for a bearer
	// token).
	EventRedeemed Event = "redeemed"
)

// Branch is the shape of the Service's resolution answer (§3.2.2).
type Branch string

// Resolution branches.
const (
	BranchEnterprise Branch = "enterprise"
	BranchService    Branch = "service"
	BranchFederated  Branch = "federated"
	// BranchServiceOrFederated is the hardening draft's two-member answer:
	// the Service Authority or one of the trusted federated Authorities.
	BranchServiceOrFederated Branch = "service_or_federated"
)

// Progress is one step of an Acquire or a redemption. Only the fields the
// Event documents are set.
type Progress struct {
	Event     Event
	Service   string // the Service origin
	User      string
	TaskID    string
	Branch    Branch
	Options   []pass.AuthorityRef // the Authorities offered (EventAuthorityResolved)
	Authority string              // the chosen Authority identifier
	// RequestID identifies the issuance request. With a plain v0.1
	// Authority anyone holding it can read the approved pass from the
	// status endpoint, so do not publish it.
	RequestID string
	// ApprovalURL is a page where a person can approve the request (the
	// links.approval extension), when the Authority gives one: show it to
	// the User.
	ApprovalURL string
	Elapsed     time.Duration
	Status      pass.Status
	Reason      string
	Scope       pass.Scope
	// Proposal is the Authority's scope proposal (EventProposal).
	Proposal *pass.ScopeProposal
}

// String describes the step in one line a CLI can print as is, for
// example "waiting for approval at https://idp.example/approve/m_1". It
// never contains the request id, and text from a peer (a denial reason)
// has its control characters replaced, so it cannot rewrite a terminal.
func (p Progress) String() string {
	switch p.Event {
	case EventServiceDiscovered:
		return "found the AgentPass Service " + p.Service
	case EventAuthorityResolved:
		return fmt.Sprintf("%s offers %d %s authority option(s)", p.Service, len(p.Options), p.Branch)
	case EventAuthorityChosen:
		return "asking " + p.Authority
	case EventRequestCreated:
		return "request sent to " + p.Authority
	case EventPending:
		if p.ApprovalURL != "" {
			return "waiting for approval at " + printable(p.ApprovalURL)
		}
		return "waiting for approval by " + p.Authority
	case EventApproved:
		return "approved by " + p.Authority
	case EventDenied:
		if p.Reason != "" {
			return "denied by " + p.Authority + ": " + printable(p.Reason)
		}
		return "denied by " + p.Authority
	case EventExpired:
		return "the request expired at " + p.Authority
	case EventCanceled:
		return "the request was canceled at " + p.Authority
	case EventRedeemed:
		if len(p.Scope) > 0 {
			return fmt.Sprintf("redeemed at %s for %v", p.Service, p.Scope)
		}
		return "redeemed at " + p.Service
	}
	return printable(string(p.Event))
}

// printable replaces control and other non-printing characters.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
}

func randFloat() float64 { return rand.Float64() }
