package harness

import (
	"math/rand/v2"
	"time"

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
}

func randFloat() float64 { return rand.Float64() }
