// Package jcs writes the RFC 8785 (JSON Canonicalization Scheme) form of
// the values a mission history hashes, and canonicalises JSON text, so
// that every implementation hashes the same bytes for the same entry.
//
// # Overview
//
// [Marshal] encodes Go values (maps, slices, strings, integers, bools,
// nil); [Canonicalize] re-encodes JSON text. Both refuse input outside the
// supported subset with [ErrUnsupported].
//
// # Usage
//
//	body, err := jcs.Marshal(map[string]any{"seq": 1, "type": "created"})
//	// body == []byte(`{"seq":1,"type":"created"}`)
//	canon, err := jcs.Canonicalize(stored) // stored text, checked against its hash
//
// # Subset
//
// It deliberately supports a subset of JSON: objects, arrays, strings,
// booleans, null and integers within ±2^53. Floating-point numbers are
// refused rather than formatted, because ECMAScript number formatting is
// the part of RFC 8785 implementations most often get wrong, and a hash
// that two implementations compute differently is worse than none. Invalid
// UTF-8 and duplicate object members are refused too: silently repairing
// them would hash something other than what was stored.
package jcs

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrUnsupported: the value or text holds something outside the subset
// (a float, an integer beyond ±2^53, invalid UTF-8, a duplicate member, a
// Go type with no JSON counterpart).
var ErrUnsupported = errors.New("jcs: unsupported value")

// maxSafe is 2^53: integers within ±maxSafe round-trip through every JSON
// implementation, including ECMAScript's.
const maxSafe = 1 << 53

// maxDepth bounds nesting, so hostile input cannot exhaust the stack.
const maxDepth = 64

// Marshal returns the canonical form of v, which may be nil, bool, string,
// any Go integer type, json.Number holding an integer, a map with string
// keys, or a slice or array of those.
func Marshal(v any) ([]byte, error) {
	bp := scratch.Get().(*[]byte)
	b, err := appendAny((*bp)[:0], v, 0)
	var out []byte
	if err == nil {
		out = bytes.Clone(b)
	}
	if b == nil { // refused: the buffer is as it was
		scratch.Put(bp)
	} else if cap(b) <= maxScratch {
		*bp = b
		scratch.Put(bp)
	}
	return out, err
}

// scratch holds the buffers Marshal writes into before copying the result
// out at its own size: a history store keeps every body it seals, and a
// body grown by appending keeps up to twice its length (and cost an
// allocation per doubling). Buffers grown past maxScratch are dropped.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxScratch = 64 << 10

// appendAny is appendValue for the types history entries are made of
// (maps of any, slices, strings, integers, bools, nil), written without
// reflection, which costs an allocation per map key and per value; any
// other type takes appendValue. Nesting is counted as appendValue counts
// it, where a value held in an interface is one level deeper than the
// interface, so both refuse the same values (FuzzMarshalFastPath).
func appendAny(dst []byte, x any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrUnsupported, maxDepth)
	}
	var err error
	switch x := x.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendString(dst, x)
	case bool:
		return strconv.AppendBool(dst, x), nil
	case int:
		return appendInt(dst, int64(x))
	case int64:
		return appendInt(dst, x)
	case json.Number:
		return appendNumber(dst, x)
	case map[string]any:
		if x == nil {
			return append(dst, "null"...), nil
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareUTF16)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = appendString(dst, k); err != nil {
				return nil, err
			}
			dst = append(dst, ':')
			if dst, err = appendHeld(dst, x[k], depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	case []any:
		if x == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = appendHeld(dst, e, depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case []string:
		if x == nil {
			return append(dst, "null"...), nil
		}
		if depth+1 > maxDepth && len(x) > 0 {
			return nil, fmt.Errorf("%w: nested deeper than %d", ErrUnsupported, maxDepth)
		}
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = appendString(dst, e); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	}
	return appendValue(dst, reflect.ValueOf(x), depth)
}

// appendHeld writes a value held in an interface (a map's or a slice's
// element) at depth, the interface's own level.
func appendHeld(dst []byte, x any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrUnsupported, maxDepth)
	}
	if x == nil {
		return append(dst, "null"...), nil
	}
	return appendAny(dst, x, depth+1)
}

// Canonicalize parses JSON text b and returns its canonical form. Text
// outside the subset is refused with ErrUnsupported; malformed JSON with a
// syntax error.
func Canonicalize(b []byte) ([]byte, error) {
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: invalid UTF-8", ErrUnsupported)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	out, err := appendToken(nil, d, 0)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("jcs: trailing data after the value")
	}
	return out, nil
}

func appendToken(dst []byte, d *json.Decoder, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrUnsupported, maxDepth)
	}
	tok, err := d.Token()
	if err != nil {
		return nil, fmt.Errorf("jcs: %w", err)
	}
	switch t := tok.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, t), nil
	case string:
		return appendString(dst, t)
	case json.Number:
		return appendNumber(dst, t)
	case json.Delim:
		if t == '[' {
			dst = append(dst, '[')
			for i := 0; d.More(); i++ {
				if i > 0 {
					dst = append(dst, ',')
				}
				if dst, err = appendToken(dst, d, depth+1); err != nil {
					return nil, err
				}
			}
			if _, err := d.Token(); err != nil {
				return nil, fmt.Errorf("jcs: %w", err)
			}
			return append(dst, ']'), nil
		}
		// An object: collect members, then write them sorted.
		type member struct {
			key string
			val []byte
		}
		var ms []member
		for d.More() {
			kt, err := d.Token()
			if err != nil {
				return nil, fmt.Errorf("jcs: %w", err)
			}
			k, _ := kt.(string)
			v, err := appendToken(nil, d, depth+1)
			if err != nil {
				return nil, err
			}
			ms = append(ms, member{k, v})
		}
		if _, err := d.Token(); err != nil {
			return nil, fmt.Errorf("jcs: %w", err)
		}
		slices.SortFunc(ms, func(a, b member) int { return compareUTF16(a.key, b.key) })
		dst = append(dst, '{')
		for i, m := range ms {
			if i > 0 {
				if ms[i-1].key == m.key {
					return nil, fmt.Errorf("%w: duplicate member %q", ErrUnsupported, m.key)
				}
				dst = append(dst, ',')
			}
			if dst, err = appendString(dst, m.key); err != nil {
				return nil, err
			}
			dst = append(dst, ':')
			dst = append(dst, m.val...)
		}
		return append(dst, '}'), nil
	}
	return nil, fmt.Errorf("%w: token %v", ErrUnsupported, tok)
}

func appendNumber(dst []byte, n json.Number) ([]byte, error) {
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: number %s is not an integer", ErrUnsupported, n)
	}
	return appendInt(dst, i)
}

func appendInt(dst []byte, i int64) ([]byte, error) {
	if i > maxSafe || i < -maxSafe {
		return nil, fmt.Errorf("%w: integer %d beyond ±2^53", ErrUnsupported, i)
	}
	return strconv.AppendInt(dst, i, 10), nil
}

func appendValue(dst []byte, v reflect.Value, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrUnsupported, maxDepth)
	}
	if !v.IsValid() {
		return append(dst, "null"...), nil
	}
	if n, ok := v.Interface().(json.Number); ok {
		return appendNumber(dst, n)
	}
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return append(dst, "null"...), nil
		}
		return appendValue(dst, v.Elem(), depth+1)
	case reflect.Bool:
		return strconv.AppendBool(dst, v.Bool()), nil
	case reflect.String:
		return appendString(dst, v.String())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return appendInt(dst, v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u := v.Uint()
		if u > maxSafe {
			return nil, fmt.Errorf("%w: integer %d beyond ±2^53", ErrUnsupported, u)
		}
		return strconv.AppendUint(dst, u, 10), nil
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		for i := range v.Len() {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendValue(dst, v.Index(i), depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("%w: map key type %s", ErrUnsupported, v.Type().Key())
		}
		if v.IsNil() {
			return append(dst, "null"...), nil
		}
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		slices.SortFunc(keys, compareUTF16)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendString(dst, k); err != nil {
				return nil, err
			}
			dst = append(dst, ':')
			if dst, err = appendValue(dst, v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key())), depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	}
	return nil, fmt.Errorf("%w: Go type %s", ErrUnsupported, v.Type())
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as an RFC 8785 string, for callers that write a
// canonical document by hand on a hot path (the compiler's input digest).
// It refuses invalid UTF-8.
func AppendString(dst []byte, s string) ([]byte, error) { return appendString(dst, s) }

// appendString writes s as ECMAScript's JSON.stringify does (RFC 8785
// §3.2.2.2): only '"', '\\' and control characters are escaped, with the
// short forms where they exist and lowercase \u00xx otherwise.
func appendString(dst []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("%w: invalid UTF-8 in a string", ErrUnsupported)
	}
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			dst = append(dst, '\\', '"')
		case c == '\\':
			dst = append(dst, '\\', '\\')
		case c == '\b':
			dst = append(dst, '\\', 'b')
		case c == '\f':
			dst = append(dst, '\\', 'f')
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"'), nil
}

// compareUTF16 orders member names by their UTF-16 code units (RFC 8785
// §3.2.3), which differs from byte order for characters beyond U+FFFF.
// It walks both names a character at a time without converting them: a
// sort compares names n log n times, and every history record sorts its
// members. FuzzCompareUTF16 holds it to the converting form.
func compareUTF16(a, b string) int {
	for len(a) > 0 && len(b) > 0 {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			a1, a2 := utf16Units(ra)
			b1, b2 := utf16Units(rb)
			if a1 != b1 {
				return cmp.Compare(a1, b1)
			}
			return cmp.Compare(a2, b2)
		}
		a, b = a[na:], b[nb:]
	}
	return cmp.Compare(len(a), len(b))
}

// utf16Units returns r's UTF-16 code units: the unit and 0 for a character
// of the Basic Multilingual Plane, the surrogate pair beyond it. A
// character from a decoded string is never itself a surrogate, so two
// characters with equal first units are both pairs.
func utf16Units(r rune) (uint16, uint16) {
	if r < 0x10000 {
		return uint16(r), 0
	}
	hi, lo := utf16.EncodeRune(r)
	return uint16(hi), uint16(lo)
}
