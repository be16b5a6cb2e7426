package conformance

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

const (
	mediaSET           = "application/secevent+jwt"
	caepSessionRevoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
)

// rfc8935Errors are the error codes of RFC 8935 §2.4.
var rfc8935Errors = []string{"invalid_request", "invalid_key", "invalid_issuer", "invalid_audience", "authentication_failed", "access_denied"}

func (r *runner) eventsChecks() []def {
	ext := func(name, expected string, fn func(context.Context, *check)) def {
		return def{role: roleExtension, group: "events", id: "ext:events", name: name, level: Choice, expected: expected, fn: fn}
	}
	return []def{
		ext("Service: the events extension names one delivery method and a receiver on its own origin",
			"Events extension: a Service lists exactly one of urn:ietf:rfc:8935 (push, with a receiver endpoint on the Service's own origin, so that an Authority cannot be made to push elsewhere) or urn:ietf:rfc:8936 (poll, no receiver).",
			r.eventsShape),
		ext("Service: the SET receiver refuses what it cannot take, and learns nothing for strangers",
			"Events extension, RFC 8935: the receiver answers 415 to another Content-Type, 413 to a body over 16 KiB, 202 to a SET about an unknown subject without fetching any key, and 400 with {\"err\",\"description\"} to a SET about a delegation it holds whose signature is not its Authority's; that delegation keeps working.",
			r.eventsReceiver),
		ext("Authority: the events poll endpoint needs a Service assertion",
			"Events extension, RFC 8936: POST {poll} answers only a Service proving itself with a Service assertion; without one, or with an unsigned one, it is refused (401).",
			r.eventsPoll),
	}
}

// forgeSET signs a revocation SET about sub with k, as a transmitter
// other than the real Authority would.
func forgeSET(k *dpop.Key, iss, aud, sub string) string {
	now := time.Now()
	tok, _ := newForge("secevent+jwt", map[string]any{
		"iss": iss, "aud": aud, "iat": now.Unix(), "jti": newJTI(),
		"sub_id": map[string]any{"format": "opaque", "id": sub},
		"events": map[string]any{caepSessionRevoked: map[string]any{"event_timestamp": now.Unix(), "initiating_entity": "admin"}},
	}).sign(k, true)
	return tok
}

func (r *runner) serviceEvents(c *check) (pass.ServiceEvents, bool) {
	if !r.needService(c) {
		return pass.ServiceEvents{}, false
	}
	if !r.svc.cfg.Extensions.Has(pass.ExtEvents) {
		c.skipf("the Service does not advertise %s (plain v0.1 is fine)", pass.ExtEvents)
		return pass.ServiceEvents{}, false
	}
	ev, err := pass.ServiceEventsFrom(r.svc.cfg.Extensions, r.svc.cfg.Service.Origin)
	if err != nil {
		c.failf("%v", err)
		return pass.ServiceEvents{}, false
	}
	return ev, true
}

func (r *runner) eventsShape(_ context.Context, c *check) {
	if ev, ok := r.serviceEvents(c); ok {
		c.got("%s, receiver %q", ev.DeliveryMethod, ev.Receiver)
	}
}

func (r *runner) eventsReceiver(ctx context.Context, c *check) {
	ev, ok := r.serviceEvents(c)
	if !ok {
		return
	}
	if ev.DeliveryMethod != pass.DeliveryPush {
		c.skipf("the Service polls for events: it has no receiver")
		return
	}
	k, err := es256Key()
	if err != nil {
		c.failf("%v", err)
		return
	}
	origin := r.svc.cfg.Service.Origin
	r.setReceiver = r.secrets.redact(ev.Receiver)
	post := func(ctype string, body []byte) *answer {
		return c.send(ctx, http.MethodPost, ev.Receiver, http.Header{"Content-Type": {ctype}}, body)
	}
	// A stranger's SET: from an issuer the Service never trusted (the
	// kit's own Service, when there is one, so that any fetch shows).
	iss := "https://conformance-unknown.invalid"
	var served int64
	if kit := r.cfg.KitService; kit != nil {
		iss = kit.origins[len(kit.origins)-1]
		served = kit.served.Load()
	}
	stranger := []byte(forgeSET(k, iss, origin, "conformance-unknown-"+r.runID))
	if a := post("text/plain", stranger); a.status != http.StatusUnsupportedMediaType {
		c.failf("a SET sent as text/plain: want 415, got %s", a)
	}
	if a := post(mediaSET, bytes.Repeat([]byte("A"), 17<<10)); a.status != http.StatusRequestEntityTooLarge {
		c.failf("a 17 KiB body: want 413, got %s", a)
	}
	if a := post(mediaSET, stranger); a.status != http.StatusAccepted {
		c.failf("a SET about an unknown subject: want 202, got %s", a)
	}
	r.eventsKnownSubject(ctx, c, k, post)
	if kit := r.cfg.KitService; kit != nil && kit.served.Load() != served {
		c.failf("the Service contacted the unknown issuer %s after a SET about a subject it does not hold", iss)
	}
}

// eventsKnownSubject sends a SET about a delegation the Service holds,
// signed by a key that is not its Authority's: the receiver must refuse it
// with an RFC 8935 error and keep the delegation.
func (r *runner) eventsKnownSubject(ctx context.Context, c *check, k *dpop.Key, post func(string, []byte) *answer) {
	if !r.svcAuth.usable() || r.svcAuth.cfg.Extensions.Endpoint(pass.ExtMission, "mission") == "" {
		r.note(c, "the Service's Authority offers no mission record, so the kit cannot name a delegation the Service holds")
		return
	}
	origin := r.svc.cfg.Service.Origin
	g, err := r.acquire(ctx, c, r.svcAuth, origin, pass.BearerToken)
	if err != nil {
		r.note(c, "no pass for the bad-signature part: "+err.Error())
		return
	}
	tok, _ := r.redeemToken(ctx, c, g)
	m := r.readMission(ctx, c, g)
	if tok == "" || m == nil {
		r.note(c, "could not redeem a pass and read its mission for the bad-signature part")
		return
	}
	i := slices.IndexFunc(m.Authorizations, func(a pass.MissionAuthorization) bool { return pass.SameOrigin(a.Service, origin) })
	if i < 0 {
		r.note(c, "the mission record lists no authorization at this Service")
		return
	}
	a := post(mediaSET, []byte(forgeSET(k, r.svcAuth.cfg.Authority, origin, m.Authorizations[i].ID)))
	var e pass.SETError
	switch {
	case a.status != http.StatusBadRequest:
		c.failf("a SET signed by a key that is not the Authority's: want 400, got %s", a)
	case a.json(&e) != nil || !slices.Contains(rfc8935Errors, e.Err):
		c.failf("the 400 is not an RFC 8935 error body {\"err\",\"description\"}: %s", a)
	case e.Err != "invalid_key":
		r.note(c, "bad signature refused as "+e.Err+" (invalid_key expected)")
	}
	if r.cfg.ServiceAPI != "" {
		if b := c.send(ctx, http.MethodGet, r.cfg.ServiceAPI, bearer(tok), nil); !b.ok() {
			c.failf("after the forged SET the delegation no longer works: %s", b)
		}
	}
}

func (r *runner) eventsPoll(ctx context.Context, c *check) {
	if !r.needAuthority(c) {
		return
	}
	if !r.auth.cfg.Extensions.Has(pass.ExtEvents) {
		c.skipf("the Authority does not advertise %s (plain v0.1 is fine)", pass.ExtEvents)
		return
	}
	ev, ok := pass.AuthorityEventsFrom(r.auth.cfg.Extensions)
	if !ok {
		c.failf("the events extension is malformed: it needs delivery_methods_supported, and a poll endpoint when it lists %s", pass.DeliveryPoll)
		return
	}
	if ev.Poll == "" {
		c.skipf("the Authority offers no poll endpoint")
		return
	}
	body := pass.PollRequest{ReturnImmediately: true}
	c.expectRefusal(c.send(ctx, http.MethodPost, ev.Poll, nil, body), "poll without a Service assertion", 401)
	iss := "https://conformance-unknown.invalid"
	if r.cfg.KitService != nil {
		iss = r.cfg.KitService.origins[0]
	}
	cl := claimsAt(time.Now(), time.Minute)
	cl["iss"], cl["aud"] = iss, r.auth.cfg.Authority
	c.expectRefusal(c.send(ctx, http.MethodPost, ev.Poll, bearer(newForge("", cl).none()), body), "poll with an unsigned assertion", 401)
}
