package dpop

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/internal/jwtcheck"
)

// DescriptionHash returns task_description_hash for a task description:
// the lower-case hex SHA-256 of its exact UTF-8 bytes, with no trimming or
// normalisation, so Harness and Authority hash the same bytes.
func DescriptionHash(description string) string {
	sum := sha256.Sum256([]byte(description))
	return hex.EncodeToString(sum[:])
}

type taskWire struct {
	Issuer   string `json:"iss"`
	TaskID   string `json:"task_id"`
	Hash     string `json:"task_description_hash"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
}

// TaskAttestation creates a task attestation JWT (§3.1.3)
// signed with the holder-binding key k, with typ "agentpass-task+jwt":
// iss = harnessID, task_id = taskID, task_description_hash =
// DescriptionHash(description), iat = now, exp = now + ttl. A zero ttl
// means 60 seconds; a zero now means time.Now().
func (k *Key) TaskAttestation(harnessID, taskID, description string, ttl time.Duration, now time.Time) (string, error) {
	if harnessID == "" || taskID == "" {
		return "", fmt.Errorf("dpop: task attestation: empty harness id or task id")
	}
	if now.IsZero() {
		now = time.Now()
	}
	return k.sign(typeTaskAttestation, false, taskWire{
		Issuer:   harnessID,
		TaskID:   taskID,
		Hash:     DescriptionHash(description),
		IssuedAt: now.Unix(),
		Expiry:   now.Add(orDefault(ttl, defaultProofTTL)).Unix(),
	})
}

// VerifyTaskAttestation runs every verification step of §3.1.3 on a task
// attestation from an issuance request, failing on the first that does not
// hold:
//
//  1. holder binding is present: cnf (harness.cnf.jwk) is a valid public
//     JWK, since the attestation is signed with it;
//  2. the signature verifies with cnf, under the algorithm allow-list and
//     header rules (typ absent, "JWT" or "agentpass-task+jwt");
//  3. task_id equals taskID;
//  4. task_description_hash equals DescriptionHash(description), compared
//     case-insensitively in constant time, so the task the User approves is
//     the task the Harness signed;
//  5. iss equals harnessID;
//  6. it is not expired, iat and nbf are not beyond skew in the future, and
//     exp - iat is at most DefaultMaxLifetime.
//
// A zero now means time.Now(); a zero skew means DefaultSkew. Errors match
// ErrInvalidTaskAttestation.
func VerifyTaskAttestation(jwt string, cnf json.RawMessage, harnessID, taskID, description string, now time.Time, skew time.Duration) error {
	if len(cnf) == 0 {
		return newErr(ErrInvalidTaskAttestation, "no harness.cnf: task attestation requires holder binding")
	}
	if harnessID == "" || taskID == "" {
		return newErr(ErrInvalidTaskAttestation, "empty harness id or task id")
	}
	if now.IsZero() {
		now = time.Now()
	}
	skew = orDefault(skew, DefaultSkew)
	key, err := ParsePublicJWK(cnf)
	if err != nil {
		return wrapErr(ErrInvalidTaskAttestation, "harness.cnf.jwk", err)
	}
	tok, err := jwtcheck.Parse(jwt, jwtcheck.TaskAttestation)
	if err != nil {
		return checkErr(ErrInvalidTaskAttestation, err)
	}
	if err := tok.Verify(key); err != nil {
		return checkErr(ErrInvalidTaskAttestation, err)
	}
	c := &tok.Claims
	if c.TaskID == nil || c.TaskDescriptionHash == nil {
		return newErr(ErrInvalidTaskAttestation, "missing task_id or task_description_hash")
	}
	if subtle.ConstantTimeCompare([]byte(*c.TaskID), []byte(taskID)) != 1 {
		return newErr(ErrInvalidTaskAttestation, "task_id mismatch")
	}
	got := strings.ToLower(*c.TaskDescriptionHash)
	if subtle.ConstantTimeCompare([]byte(got), []byte(DescriptionHash(description))) != 1 {
		return newErr(ErrInvalidTaskAttestation, "task_description_hash mismatch")
	}
	if c.Issuer == "" {
		return newErr(ErrInvalidTaskAttestation, "missing iss")
	}
	if c.Issuer != harnessID {
		return newErr(ErrInvalidTaskAttestation, "iss mismatch")
	}
	if err := jwtcheck.CheckTimes(tok, now, jwtcheck.TimeRules{Skew: skew, MaxLifetime: DefaultMaxLifetime}); err != nil {
		return checkErr(ErrInvalidTaskAttestation, err)
	}
	return nil
}
