package jwtcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/agentpass-go/agentpass/internal/jsonscan"
)

// maxLinearMembers is how many member names are compared one by one for
// duplicates before a map takes over, so a large object stays linear.
const maxLinearMembers = 32

// members calls f with the name and raw value of each top-level member of
// the JSON object b, in order. Names are matched exactly, as JOSE requires
// (encoding/json would match "ALG" to alg), and an object naming a member
// twice is refused: with encoding/json the last one wins while another
// library may read the first, so two parties would see two tokens.
func members(b []byte, f func(name, raw []byte) error) error {
	i := jsonscan.SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errNotObject
	}
	if !jsonscan.Valid(b) {
		return errSyntax
	}
	var buf [16][]byte
	seen := buf[:0]
	var seenMap map[string]struct{}
	i = jsonscan.SkipSpace(b, i+1)
	if b[i] == '}' {
		return nil
	}
	for {
		// b is valid JSON: a member is a string, a colon, a value, then a
		// comma or the closing brace.
		end := jsonscan.StringEnd(b, i)
		name := b[i+1 : end-1]
		// A name with an escape or with invalid UTF-8 (which
		// encoding/json, and so go-jose, reads as U+FFFD) is compared as
		// decoded, so that "\x80" and "\x81" are the duplicate they are
		// to other libraries.
		if bytes.IndexByte(name, '\\') >= 0 || !utf8.Valid(name) {
			var s string
			if err := json.Unmarshal(b[i:end], &s); err != nil {
				return errSyntax
			}
			name = []byte(s)
		}
		if seenMap != nil {
			if _, dup := seenMap[string(name)]; dup {
				return errDuplicate
			}
			seenMap[string(name)] = struct{}{}
		} else {
			for _, s := range seen {
				if bytes.Equal(s, name) {
					return errDuplicate
				}
			}
			if seen = append(seen, name); len(seen) > maxLinearMembers {
				seenMap = make(map[string]struct{}, 2*len(seen))
				for _, s := range seen {
					seenMap[string(s)] = struct{}{}
				}
			}
		}
		i = jsonscan.SkipSpace(b, end)
		i = jsonscan.SkipSpace(b, i+1) // the colon
		vend := jsonscan.ValueEnd(b, i)
		if err := f(name, b[i:vend]); err != nil {
			return err
		}
		i = jsonscan.SkipSpace(b, vend)
		if b[i] == '}' {
			return nil
		}
		i = jsonscan.SkipSpace(b, i+1) // the comma
	}
}

// Errors of members, which each caller names for its part of the token.
var (
	errNotObject = errors.New("not a JSON object")
	errSyntax    = errors.New("malformed JSON")
	errDuplicate = errors.New("duplicate member")
)
