// Package missionlog seals and verifies the hash chain of a mission's
// history, so that an entry changed, removed or reordered in the store is
// detected.
//
// # Overview
//
// [Seal] links a new entry to the previous hash and returns the canonical
// bytes to store with its hash; [Verify] checks a stored log; [Decode]
// reads an entry back. Each entry's hash is "sha256:" and the hex SHA-256
// of the RFC 8785 form of the entry without its hash, and each entry names
// the previous entry's hash, so the last hash commits to the whole log.
//
// # Usage
//
//	body, err := missionlog.Seal(&entry, head) // head: the previous entry's hash, "" for the first
//	// store body and entry.Hash, then the new head is entry.Hash
//	...
//	if seq, err := missionlog.Verify(bodies, hashes); err != nil {
//		// errors.Is(err, missionlog.ErrBroken); seq is the first bad entry
//	}
//
// Stores keep the canonical bytes that were hashed, not a re-encoding of
// them: a database that normalises JSON (PostgreSQL's jsonb) would
// otherwise make an intact log fail verification.
package missionlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/agentpass-go/agentpass/internal/jcs"
	"github.com/agentpass-go/agentpass/pass"
)

// ErrBroken: the chain does not verify; the error names the first bad seq.
var ErrBroken = errors.New("missionlog: history chain broken")

// Seal fills e.Prev with prev, computes e.Hash and returns the canonical
// bytes that were hashed. e.At is truncated to microseconds (the precision
// stores keep) and made UTC.
func Seal(e *pass.HistoryEntry, prev string) ([]byte, error) {
	e.Prev = prev
	e.At = e.At.UTC().Truncate(time.Microsecond)
	body, ok := appendEntry(make([]byte, 0, 192+len(e.Type)+len(e.By)+len(e.Prev)), e)
	if !ok {
		// Something the direct writer does not take (an escape, a detail
		// that is not a plain string): the general canonical encoder.
		var err error
		if body, err = sealGeneral(e); err != nil {
			return nil, err
		}
	}
	e.Hash = Hash(body)
	return body, nil
}

// sealGeneral is the canonical form of e through jcs.Marshal: the
// reference the direct writer must match byte for byte (FuzzSeal).
func sealGeneral(e *pass.HistoryEntry) ([]byte, error) {
	m := map[string]any{
		"seq": e.Seq, "at": e.At.Format(time.RFC3339Nano), "type": e.Type, "by": e.By,
		"version": e.Version, "prev": e.Prev,
	}
	if len(e.Details) > 0 {
		m["details"] = e.Details
	}
	body, err := jcs.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("missionlog: %w", err)
	}
	return body, nil
}

// maxDirectDetails bounds the details the direct writer sorts on the stack.
const maxDirectDetails = 8

// appendEntry writes the RFC 8785 form of e directly, without reflection or
// maps: the members in their canonical order (all ASCII names), and details
// when they are a few plain strings. Entries are sealed on every consumed
// pass, and the general encoder allocated for every key it sorted. It
// returns false for anything else, which then takes the general path.
func appendEntry(b []byte, e *pass.HistoryEntry) ([]byte, bool) {
	const maxSafe = 1 << 53
	if e.Seq > maxSafe || e.Seq < -maxSafe || e.Version > maxSafe || e.Version < -maxSafe ||
		!plain(e.Type) || !plain(e.By) || !plain(e.Prev) || len(e.Details) > maxDirectDetails {
		return nil, false
	}
	b = append(b, `{"at":"`...)
	b = e.At.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","by":"`...)
	b = append(b, e.By...)
	b = append(b, '"')
	if len(e.Details) > 0 {
		var buf [maxDirectDetails]string
		keys := buf[:0]
		for k, v := range e.Details {
			if s, ok := v.(string); !ok || !plain(k) || !plain(s) {
				return nil, false
			}
			keys = append(keys, k)
		}
		slices.Sort(keys) // ASCII: byte order is UTF-16 order
		b = append(b, `,"details":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, k...)
			b = append(b, `":"`...)
			b = append(b, e.Details[k].(string)...)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, `,"prev":"`...)
	b = append(b, e.Prev...)
	b = append(b, `","seq":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, `,"type":"`...)
	b = append(b, e.Type...)
	b = append(b, `","version":`...)
	b = strconv.AppendInt(b, e.Version, 10)
	return append(b, '}'), true
}

// plain reports whether s is printable ASCII without '"' or '\\': written
// as it is in canonical JSON.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Hash returns the chain hash of canonical bytes.
func Hash(body []byte) string {
	sum := sha256.Sum256(body)
	var out [len("sha256:") + 2*sha256.Size]byte
	copy(out[:], "sha256:")
	hex.Encode(out[len("sha256:"):], sum[:])
	return string(out[:])
}

// Decode parses the stored bytes of an entry and attaches its stored hash.
// Detail numbers decode as json.Number.
func Decode(body []byte, hash string) (pass.HistoryEntry, error) {
	var e pass.HistoryEntry
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&e); err != nil {
		return e, fmt.Errorf("missionlog: %w", err)
	}
	e.Hash = hash
	return e, nil
}

// Verify checks a mission's stored entries, in seq order: every body is
// canonical, hashes to its stored hash, has the next seq and names the
// previous hash. It returns nil, or an error wrapping ErrBroken with the
// first bad seq (1-based position in the log when the body cannot be read).
func Verify(bodies [][]byte, hashes []string) (badSeq int64, err error) {
	if len(bodies) != len(hashes) {
		return 1, fmt.Errorf("%w: %d bodies, %d hashes", ErrBroken, len(bodies), len(hashes))
	}
	prev := ""
	for i, body := range bodies {
		seq := int64(i + 1)
		canon, err := jcs.Canonicalize(body)
		if err != nil || !bytes.Equal(canon, body) {
			return seq, fmt.Errorf("%w at seq %d: entry is not canonical JSON", ErrBroken, seq)
		}
		if Hash(body) != hashes[i] {
			return seq, fmt.Errorf("%w at seq %d: hash mismatch", ErrBroken, seq)
		}
		e, err := Decode(body, hashes[i])
		if err != nil {
			return seq, fmt.Errorf("%w at seq %d: %w", ErrBroken, seq, err)
		}
		if e.Seq != seq || e.Prev != prev {
			return seq, fmt.Errorf("%w at seq %d: out of sequence or wrong prev", ErrBroken, seq)
		}
		prev = hashes[i]
	}
	return 0, nil
}
