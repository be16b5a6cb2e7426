package pass

import (
	"errors"
	"fmt"
	"slices"
)

// This file holds the wire types of the events extension (ExtEvents): how an
// Authority delivers RFC 8417 security event tokens (SETs) about missions a
// Service redeemed, and the RFC 8936 poll exchange. Plain v0.1 peers ignore
// every member defined here.

// The two delivery methods. A Service uses exactly one of them, so that a
// SET has one path and the Authority one place to forget it.
const (
	// DeliveryPush is RFC 8935: the Authority POSTs each SET to the
	// Service's receiver.
	DeliveryPush = "urn:ietf:rfc:8935"
	// DeliveryPoll is RFC 8936: the Service fetches SETs from the
	// Authority's poll endpoint.
	DeliveryPoll = "urn:ietf:rfc:8936"
)

// Bounds of the events wire types, so that a peer's document or poll
// request costs a bounded amount whatever it holds.
const (
	maxEventTypes = 32
	// MaxPollEvents is the most SETs one poll answer carries.
	MaxPollEvents = 1000
	maxPollAcks   = 1000
	maxSETIDBytes = 256
)

// AuthorityEvents is the events extension as an Authority advertises it.
type AuthorityEvents struct {
	// DeliveryMethods lists the methods the Authority offers
	// (member delivery_methods_supported).
	DeliveryMethods []string
	// Poll is the RFC 8936 poll endpoint (endpoints.poll); required when
	// DeliveryMethods lists DeliveryPoll.
	Poll string
	// EventTypes lists the event types the Authority sends (member
	// events_supported).
	EventTypes []string
}

// Extension encodes e as an extensions entry, refusing what a peer would
// drop.
func (e AuthorityEvents) Extension() (Extension, error) {
	if err := e.Validate(); err != nil {
		return Extension{}, err
	}
	x := Extension{Version: "1.0"}
	if e.Poll != "" {
		x.Endpoints = map[string]string{"poll": e.Poll}
	}
	x, err := x.WithMember("delivery_methods_supported", e.DeliveryMethods)
	if err == nil {
		x, err = x.WithMember("events_supported", e.EventTypes)
	}
	return x, err
}

// Validate checks the methods, the poll endpoint and the bounds.
func (e AuthorityEvents) Validate() error {
	if len(e.DeliveryMethods) == 0 {
		return errors.New("pass: events: no delivery method")
	}
	for _, m := range e.DeliveryMethods {
		if m != DeliveryPush && m != DeliveryPoll {
			return fmt.Errorf("pass: events: unknown delivery method %q", truncate(m, 64))
		}
	}
	if slices.Contains(e.DeliveryMethods, DeliveryPoll) {
		if err := CheckHTTPSURL(e.Poll); err != nil {
			return fmt.Errorf("pass: events: poll endpoint: %w", err)
		}
	}
	return checkEventTypes(e.EventTypes)
}

// AuthorityEventsFrom reads the events extension of an Authority's
// configuration. ok is false when it is absent or invalid; the Service then
// relies on authorization checks alone.
func AuthorityEventsFrom(x Extensions) (e AuthorityEvents, ok bool) {
	ext, found := x.Get(ExtEvents)
	if !found {
		return AuthorityEvents{}, false
	}
	e.Poll = ext.Endpoints["poll"]
	ext.Member("delivery_methods_supported", &e.DeliveryMethods)
	ext.Member("events_supported", &e.EventTypes)
	if e.Validate() != nil {
		return AuthorityEvents{}, false
	}
	return e, true
}

// ServiceEvents is the events extension as a Service advertises it.
type ServiceEvents struct {
	// DeliveryMethod is the one method the Service uses (member
	// delivery_methods, a list of exactly one).
	DeliveryMethod string
	// Receiver is the RFC 8935 push endpoint (endpoints.receiver), on the
	// Service's own origin so that an Authority cannot be made to POST
	// elsewhere; required for DeliveryPush, absent for DeliveryPoll.
	Receiver string
	// EventsAccepted lists the event types the Service applies (member
	// events_accepted). The Authority sends another type's fallback (for
	// example session-revoked for mission-completed) or nothing.
	EventsAccepted []string
}

// Extension encodes e as an extensions entry, refusing what the Authority
// would drop. origin is the Service's origin.
func (e ServiceEvents) Extension(origin string) (Extension, error) {
	if err := e.Validate(origin); err != nil {
		return Extension{}, err
	}
	x := Extension{Version: "1.0"}
	if e.Receiver != "" {
		x.Endpoints = map[string]string{"receiver": e.Receiver}
	}
	x, err := x.WithMember("delivery_methods", []string{e.DeliveryMethod})
	if err == nil {
		x, err = x.WithMember("events_accepted", e.EventsAccepted)
	}
	return x, err
}

// Validate checks that e names exactly one known method, a receiver on
// origin exactly when it pushes, and bounded event types.
func (e ServiceEvents) Validate(origin string) error {
	switch e.DeliveryMethod {
	case DeliveryPush:
		if err := CheckHTTPSURL(e.Receiver); err != nil {
			return fmt.Errorf("pass: events: receiver: %w", err)
		}
		if !SameOrigin(e.Receiver, origin) {
			return errors.New("pass: events: receiver is not on the Service's origin")
		}
	case DeliveryPoll:
		if e.Receiver != "" {
			return errors.New("pass: events: a polling Service has no receiver")
		}
	default:
		return fmt.Errorf("pass: events: delivery method %q is not one of %s, %s", truncate(e.DeliveryMethod, 64), DeliveryPush, DeliveryPoll)
	}
	return checkEventTypes(e.EventsAccepted)
}

// Accepts reports whether the Service applies events of type typ.
func (e ServiceEvents) Accepts(typ string) bool { return slices.Contains(e.EventsAccepted, typ) }

// ServiceEventsFrom reads the events extension of the configuration of the
// Service at origin. It fails when the extension is absent, lists zero or
// several methods, or pushes to another origin: the Authority then sends
// that Service nothing.
func ServiceEventsFrom(x Extensions, origin string) (ServiceEvents, error) {
	ext, found := x.Get(ExtEvents)
	if !found {
		return ServiceEvents{}, errors.New("pass: events: extension absent")
	}
	var e ServiceEvents
	var methods []string
	if !ext.Member("delivery_methods", &methods) || len(methods) != 1 {
		return ServiceEvents{}, errors.New("pass: events: delivery_methods must list exactly one method")
	}
	e.DeliveryMethod = methods[0]
	e.Receiver = ext.Endpoints["receiver"]
	ext.Member("events_accepted", &e.EventsAccepted)
	if err := e.Validate(origin); err != nil {
		return ServiceEvents{}, err
	}
	return e, nil
}

func checkEventTypes(types []string) error {
	if len(types) > maxEventTypes {
		return fmt.Errorf("pass: events: more than %d event types", maxEventTypes)
	}
	for _, t := range types {
		if t == "" || len(t) > maxExtensionURI {
			return errors.New("pass: events: event type is empty or too long")
		}
	}
	return nil
}

// SETError is the RFC 8935 §2.3 error body a receiver answers with a 400,
// and an entry of an RFC 8936 poll request's setErrs. Err is one of the
// RFC 8935 codes (invalid_request, invalid_key, invalid_issuer,
// invalid_audience, authentication_failed, access_denied).
type SETError struct {
	Err         string `json:"err"`
	Description string `json:"description,omitempty"`
}

// PollRequest is the body of an RFC 8936 poll.
type PollRequest struct {
	// MaxEvents bounds the SETs answered; nil means the Authority's
	// default, 0 acknowledges without asking for more.
	MaxEvents *int `json:"maxEvents,omitempty"`
	// ReturnImmediately refuses a long poll.
	ReturnImmediately bool `json:"returnImmediately,omitempty"`
	// Ack lists the jti of SETs processed; they are never returned again.
	Ack []string `json:"ack,omitempty"`
	// SetErrs lists SETs refused, by jti; they are not returned again
	// either.
	SetErrs map[string]SETError `json:"setErrs,omitempty"`
}

// Validate bounds the request, so one poll costs a bounded amount.
func (r *PollRequest) Validate() error {
	if r.MaxEvents != nil && (*r.MaxEvents < 0 || *r.MaxEvents > MaxPollEvents) {
		return &FieldError{Field: "maxEvents", Reason: fmt.Sprintf("must be between 0 and %d", MaxPollEvents)}
	}
	if len(r.Ack)+len(r.SetErrs) > maxPollAcks {
		return &FieldError{Field: "ack", Reason: fmt.Sprintf("more than %d acknowledgements", maxPollAcks)}
	}
	for _, id := range r.Ack {
		if id == "" || len(id) > maxSETIDBytes {
			return &FieldError{Field: "ack", Reason: "jti empty or too long"}
		}
	}
	for id, e := range r.SetErrs {
		if id == "" || len(id) > maxSETIDBytes || e.Err == "" || len(e.Err) > 64 || len(e.Description) > 1024 {
			return &FieldError{Field: "setErrs", Reason: "entry malformed or too long"}
		}
	}
	return nil
}

// PollResponse is the answer to an RFC 8936 poll: SETs keyed by jti.
type PollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable,omitempty"`
}
