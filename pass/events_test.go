package pass_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/pass"
)

const svcOrigin = "https://api.example.com"

// The events extension of both roles survives a round trip through a
// configuration's extensions object.
func TestEventsExtensionRoundTrip(t *testing.T) {
	ae := pass.AuthorityEvents{
		DeliveryMethods: []string{pass.DeliveryPush, pass.DeliveryPoll},
		Poll:            "https://idp.example/events/poll",
		EventTypes:      []string{"https://schemas.openid.net/secevent/caep/event-type/session-revoked"},
	}
	se := pass.ServiceEvents{DeliveryMethod: pass.DeliveryPush, Receiver: svcOrigin + "/events", EventsAccepted: ae.EventTypes}
	var x pass.Extensions
	ext, err := ae.Extension()
	if err != nil {
		t.Fatal(err)
	}
	if x, err = x.With(pass.ExtEvents, ext); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := pass.AuthorityEventsFrom(pass.ParseExtensions(b))
	if !ok {
		t.Fatalf("AuthorityEventsFrom(%s) failed", b)
	}
	if diff := cmp.Diff(ae, got); diff != "" {
		t.Errorf("authority events (-want +got):\n%s", diff)
	}

	ext, err = se.Extension(svcOrigin)
	if err != nil {
		t.Fatal(err)
	}
	x, _ = pass.Extensions{}.With(pass.ExtEvents, ext)
	b, _ = json.Marshal(x)
	gotS, err := pass.ServiceEventsFrom(pass.ParseExtensions(b), svcOrigin)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(se, gotS); diff != "" {
		t.Errorf("service events (-want +got):\n%s", diff)
	}
	if !gotS.Accepts(ae.EventTypes[0]) || gotS.Accepts("urn:other") {
		t.Error("Accepts")
	}
}

// A Service names exactly one method; a push receiver must sit on the
// Service's own origin, so the Authority cannot be made a reflector.
func TestServiceEventsRefused(t *testing.T) {
	tests := []struct {
		name string
		json string
	}{
		{"absent", `{}`},
		{"two methods", `{"` + pass.ExtEvents + `":{"version":"1.0","endpoints":{"receiver":"https://api.example.com/ev"},"delivery_methods":["urn:ietf:rfc:8935","urn:ietf:rfc:8936"]}}`},
		{"no method", `{"` + pass.ExtEvents + `":{"version":"1.0","endpoints":{"receiver":"https://api.example.com/ev"}}}`},
		{"unknown method", `{"` + pass.ExtEvents + `":{"version":"1.0","delivery_methods":["urn:example:carrier-pigeon"]}}`},
		{"push without receiver", `{"` + pass.ExtEvents + `":{"version":"1.0","delivery_methods":["urn:ietf:rfc:8935"]}}`},
		{"receiver elsewhere", `{"` + pass.ExtEvents + `":{"version":"1.0","endpoints":{"receiver":"https://victim.example/ev"},"delivery_methods":["urn:ietf:rfc:8935"]}}`},
		{"receiver other port", `{"` + pass.ExtEvents + `":{"version":"1.0","endpoints":{"receiver":"https://api.example.com:8443/ev"},"delivery_methods":["urn:ietf:rfc:8935"]}}`},
		{"poll with receiver", `{"` + pass.ExtEvents + `":{"version":"1.0","endpoints":{"receiver":"https://api.example.com/ev"},"delivery_methods":["urn:ietf:rfc:8936"]}}`},
		{"methods a string", `{"` + pass.ExtEvents + `":{"version":"1.0","delivery_methods":"urn:ietf:rfc:8936"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if e, err := pass.ServiceEventsFrom(pass.ParseExtensions([]byte(tt.json)), svcOrigin); err == nil {
				t.Errorf("accepted %+v", e)
			}
		})
	}
	// The control: a poll-only Service.
	ok := `{"` + pass.ExtEvents + `":{"version":"1.0","delivery_methods":["urn:ietf:rfc:8936"],"events_accepted":["x:y"]}}`
	if e, err := pass.ServiceEventsFrom(pass.ParseExtensions([]byte(ok)), svcOrigin); err != nil || e.DeliveryMethod != pass.DeliveryPoll {
		t.Errorf("poll-only Service: %+v, %v", e, err)
	}
}

func TestAuthorityEventsRefused(t *testing.T) {
	for name, e := range map[string]pass.AuthorityEvents{
		"no methods":     {},
		"unknown method": {DeliveryMethods: []string{"urn:x"}},
		"poll http":      {DeliveryMethods: []string{pass.DeliveryPoll}, Poll: "http://idp.example/poll"},
		"poll missing":   {DeliveryMethods: []string{pass.DeliveryPoll}},
		"empty type":     {DeliveryMethods: []string{pass.DeliveryPush}, EventTypes: []string{""}},
	} {
		if _, err := e.Extension(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPollRequestValidate(t *testing.T) {
	n := func(i int) *int { return &i }
	many := make([]string, 1001)
	for i := range many {
		many[i] = "j"
	}
	for name, r := range map[string]pass.PollRequest{
		"negative max":  {MaxEvents: n(-1)},
		"huge max":      {MaxEvents: n(pass.MaxPollEvents + 1)},
		"too many acks": {Ack: many},
		"empty ack":     {Ack: []string{""}},
		"empty err":     {SetErrs: map[string]pass.SETError{"j": {}}},
	} {
		if err := r.Validate(); !errors.Is(err, pass.ErrInvalidDocument) {
			t.Errorf("%s: err = %v, want ErrInvalidDocument", name, err)
		}
	}
	var r pass.PollRequest
	if err := json.Unmarshal([]byte(`{"maxEvents":0,"returnImmediately":true,"ack":["a"],"setErrs":{"b":{"err":"invalid_key","description":"d"}}}`), &r); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil || r.MaxEvents == nil || *r.MaxEvents != 0 || !r.ReturnImmediately || r.SetErrs["b"].Err != "invalid_key" {
		t.Errorf("poll request %+v: %v", r, err)
	}
}

// FuzzPollRequest: whatever a poller sends, decoding never panics, and an
// accepted request re-encodes to the same accepted request.
func FuzzPollRequest(f *testing.F) {
	fuzzDocument[pass.PollRequest](f,
		`{"maxEvents":100,"returnImmediately":false,"ack":["set_1"],"setErrs":{"set_2":{"err":"invalid_request","description":"bad"}}}`,
		`{"maxEvents":0,"ack":[]}`, `{"maxEvents":-1}`, `{"setErrs":{"":{"err":""}}}`)
}
