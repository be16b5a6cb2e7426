package pass

import (
	"strings"
)

// This file holds the wire types of the sub-agent delegation extension
// (ExtDelegation): a parent mission's Harness asks for a child mission bound
// to a sub-agent's own key, with a scope, expiry and depth that can only
// shrink.

// DelegationRequest is the body of POST {delegate}. The caller proves the
// parent mission's holder key in the ProofHeader header; the Service and the
// user are the parent's, so the request does not name them.
type DelegationRequest struct {
	Parent  DelegationParent `json:"parent"`
	Type    PassType         `json:"type"`
	Harness HarnessInfo      `json:"harness"`
	Task    Task             `json:"task"`
	Scope   Scope            `json:"scope"`
	// ExpiresIn, when positive, asks for the child's delegation to end
	// that many seconds from now; it may not outlive the parent.
	ExpiresIn int64 `json:"expires_in,omitempty"`
	// Delegation carries the depth the child may delegate further.
	Delegation *DelegationLimits `json:"delegation,omitempty"`
	// HarnessProof is a fresh proof by the child key: without it the
	// parent could name any public key, including one it does not hold
	// for the sub-agent (see ChildKeyBinding).
	HarnessProof JWTContainer `json:"harness_proof"`
}

// DelegationParent names the parent mission.
type DelegationParent struct {
	MissionID string `json:"mission_id"`
}

// DelegationLimits are the delegation rights asked for a child.
type DelegationLimits struct {
	MaxDepth int `json:"max_depth"`
}

// maxChildSuffix is the longest suffix a parent may append to its own
// harness id to name a child.
const maxChildSuffix = 32

// maxDelegationDepth bounds max_depth on the wire; Authorities cap it far
// lower.
const maxDelegationDepth = 32

// Validate checks the request's shape: a mission id, a pass type, a child
// harness id of the form "<parent id>/<suffix>" (the Authority checks the
// parent part), a holder key, a task with its attestation, a non-empty
// scope and the child's proof. Whether the scope is within the parent's,
// and concrete, is the Authority's answer (not_attenuated), not a
// malformed request.
func (r *DelegationRequest) Validate() error {
	if !strings.HasPrefix(r.Parent.MissionID, MissionIDPrefix) || len(r.Parent.MissionID) > maxMissionID {
		return invalid("parent.mission_id", "not a mission id")
	}
	if err := checkType("type", r.Type); err != nil {
		return err
	}
	if r.Harness.ID == "" {
		return missing("harness.id")
	}
	if _, ok := ChildSuffix(r.Harness.ID); !ok {
		return invalid("harness.id", "must be the parent's harness id, '/' and a suffix of 1 to 32 characters [a-z0-9_-]")
	}
	if r.Harness.Cnf == nil {
		return missing("harness.cnf")
	}
	if err := r.Harness.Cnf.validate("harness.cnf"); err != nil {
		return err
	}
	if r.Harness.Attestation != nil {
		return invalid("harness.attestation", "a child has no attestation of its own")
	}
	if r.Task.ID == "" {
		return missing("task.id")
	}
	if r.Task.Description == "" {
		return missing("task.description")
	}
	if r.Task.Attestation == nil {
		return missing("task.attestation")
	}
	if err := r.Task.Attestation.validate("task.attestation"); err != nil {
		return err
	}
	if len(r.Scope) == 0 {
		return missing("scope")
	}
	if err := r.Scope.validate("scope"); err != nil {
		return err
	}
	if r.ExpiresIn < 0 {
		return invalid("expires_in", "must not be negative")
	}
	if d := r.Delegation; d != nil && (d.MaxDepth < 0 || d.MaxDepth > maxDelegationDepth) {
		return invalid("delegation.max_depth", "out of range")
	}
	return r.HarnessProof.validate("harness_proof")
}

// ChildSuffix splits a child harness id "<parent id>/<suffix>" at its last
// '/' and reports whether the suffix is 1 to 32 characters of
// [a-z0-9_-] after a non-empty parent id.
func ChildSuffix(id string) (string, bool) {
	i := strings.LastIndexByte(id, '/')
	if i <= 0 {
		return "", false
	}
	s := id[i+1:]
	if len(s) == 0 || len(s) > maxChildSuffix {
		return "", false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return "", false
		}
	}
	return s, true
}

// ChildKeyBinding is the value whose SHA-256 a child's harness proof
// carries as aph: the parent mission id and the child key's RFC 7638
// thumbprint, so the proof cannot be replayed for another parent or key.
func ChildKeyBinding(parentMissionID, childThumbprint string) string {
	return parentMissionID + "." + childThumbprint
}
