// Package proofwire turns a failed holder-proof check into the refusal a
// peer may see: a wire error whose message names one reason from a fixed
// set, so a Harness developer learns which check failed while no token, key
// or internal detail reaches the wire.
package proofwire

import (
	"errors"
	"net/http"
	"strings"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// Reason says why a holder proof (a harness proof at a Service or at
// an Authority's status endpoint, or a DPoP proof) was refused. It is sent as
// the wire message, so a Harness developer learns which check failed; the
// set is fixed so that no token, key or internal detail can reach the wire.
type Reason string

// Proof refusal reasons.
const (
	Missing       Reason = "proof missing"
	Malformed     Reason = "malformed JWT"
	BadHeader     Reason = "forbidden or missing header member"
	BadAlg        Reason = "algorithm not allowed"
	BadTyp        Reason = "wrong typ"
	MissingClaim  Reason = "missing iss, aud, iat, exp or jti"
	WrongKind     Reason = "not a proof"
	Expired       Reason = "expired"
	NotYetValid   Reason = "issued in the future"
	Lifetime      Reason = "lifetime too long"
	WrongAudience Reason = "wrong aud"
	WrongIssuer   Reason = "wrong iss"
	MissingHTM    Reason = "missing htm"
	MissingHTU    Reason = "missing htu"
	MissingAPH    Reason = "missing aph"
	WrongHTM      Reason = "wrong htm"
	WrongHTU      Reason = "wrong htu"
	WrongAPH      Reason = "wrong aph"
	WrongNonce    Reason = "wrong or missing nonce"
	WrongATH      Reason = "wrong ath"
	BadKey        Reason = "unusable key"
	BadSignature  Reason = "bad signature"
	Replayed      Reason = "jti replayed"
	Invalid       Reason = "invalid"
)

// FailReason returns the wire error refusing a proof: code (for example
// [pass.CodeInvalidHarnessProof]) with a message naming reason. A replayed proof
// is 409, every other refusal takes code's status.
func FailReason(code pass.Code, reason Reason) *pass.Error {
	e := pass.Fail(code, "proof refused: "+string(reason))
	if reason == Replayed {
		e.Status = http.StatusConflict
	}
	return e
}

// Fail returns the wire error refusing a proof whose check failed with
// err: code with the fixed reason of err.
func Fail(code pass.Code, err error) *pass.Error {
	return FailReason(code, Of(err))
}

// Reasons maps the reason of a failed proof check to the fixed wire
// reason a peer may see. Keys are matched as prefixes of [dpop.Error.Reason],
// longest first; jwtcheck's reasons pass through checkErr unchanged.
var Reasons = []struct {
	prefix string
	reason Reason
}{
	{"missing htm", MissingHTM},
	{"missing htu", MissingHTU},
	{"missing aph", MissingAPH},
	{"missing ath", WrongATH},
	{"missing iss", MissingClaim},
	{"missing aud", MissingClaim},
	{"missing jti", MissingClaim},
	{"missing iat", MissingClaim},
	{"missing exp", MissingClaim},
	{"missing alg", BadHeader},
	{"missing jwk", BadHeader},
	{"htm mismatch", WrongHTM},
	{"htu mismatch", WrongHTU},
	{"aph mismatch", WrongAPH},
	{"ath mismatch", WrongATH},
	{"aud", WrongAudience},
	{"iss mismatch", WrongIssuer},
	{"task attestation claims", WrongKind},
	{"exp not allowed", WrongKind},
	{"expired", Expired},
	{"too old", Expired},
	{"iat in the future", NotYetValid},
	{"not yet valid", NotYetValid},
	{"lifetime exceeds", Lifetime},
	{"exp not after iat", Lifetime},
	{"jti replayed", Replayed},
	{"jti too long", Malformed},
	{"bad signature", BadSignature},
	{"alg", BadAlg},
	{"typ", BadTyp},
	{"wrong typ", BadTyp},
	{"forbidden header", BadHeader},
	{"kid header", BadHeader},
	{"jwk header", BadHeader},
	{"malformed header encoding", Malformed},
	{"malformed header", BadHeader},
	{"header is not", BadHeader},
	{"cnf.jwk", BadKey},
	{"key", BadKey},
	{"nonce", WrongNonce},
	{"stale nonce", WrongNonce},
	{"empty token", Malformed},
	{"token too large", Malformed},
	{"not a compact JWS", Malformed},
	{"malformed", Malformed},
	{"claims are not", Malformed},
}

// Of returns why a proof verification failed, as one of the fixed
// reasons (never the token or the detail of the check, which belong in
// logs). A replay gives "jti replayed"; an error of no known check gives
// "invalid".
func Of(err error) Reason {
	if errors.Is(err, dpop.ErrReplay) {
		return Replayed
	}
	var e *dpop.Error
	if !errors.As(err, &e) {
		return Invalid
	}
	if errors.Is(e.Kind, dpop.ErrInvalidKey) {
		return BadKey
	}
	for _, r := range Reasons {
		if strings.HasPrefix(e.Reason, r.prefix) {
			return r.reason
		}
	}
	return Invalid
}
