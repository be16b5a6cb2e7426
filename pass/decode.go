package pass

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"

	"github.com/agentpass-go/agentpass/internal/jsonscan"
)

// Document is a wire document that can check itself.
type Document interface {
	Validate() error
}

// MaxDocumentSize is the largest document Decode accepts (64 KiB): protocol
// documents are small, and a peer must not make us buffer more.
const MaxDocumentSize = 64 << 10

// Decode parses one JSON document into doc and validates it.
//
// Unknown members are ignored, so newer peers and extensions interoperate. A
// body whose only member is "request" or "response" is unwrapped first, since
// the spec's schemas wrap documents that peers send bare; a body that mixes
// the envelope with other members is rejected, as it is ambiguous. Trailing
// data after the document, a body over [MaxDocumentSize] and a JSON null are
// errors. Every error matches
// [ErrInvalidDocument], or [ErrUnsupportedVersion] for a configuration with
// an unknown major version.
func Decode(data []byte, doc Document) error { return decode(data, doc, true) }

// decode is Decode; without fast, the document is read by the json.Decoder
// path only (the reference of FuzzDecodeFastPath).
func decode(data []byte, doc Document, fast bool) error {
	if len(data) > MaxDocumentSize {
		return invalid("body", "larger than 64 KiB")
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return invalid("body", "must be a JSON object")
	}
	if inner, ok, err := unwrapEnvelope(data); err != nil {
		return err
	} else if ok {
		data = inner
	}
	// One valid document (nearly every body) decodes in one call, without
	// a Decoder's copy of the body; anything else takes the Decoder path,
	// whose errors name what is wrong (FuzzDecodeFastPath: same answers).
	if v, ok := doc.(*ValidationRequest); ok && fast {
		if value, ok := canonicalValidationRequest(data); ok {
			v.AgentPass.Value = value
			return v.Validate()
		}
	}
	if fd, ok := doc.(fastDecoder); ok && fast && jsonscan.Valid(data) && fd.decodeFast(data) {
		return doc.Validate()
	}
	if fast && json.Unmarshal(data, doc) == nil {
		return doc.Validate()
	}
	return decodeSlow(data, doc)
}

// fastDecoder is a document with a reader of its own (fastdecode.go); it
// reports false for anything it does not read exactly as encoding/json.
type fastDecoder interface {
	decodeFast(data []byte) bool
}

// canonicalValidationRequest reads the one form Services send of the
// document every validation carries, {"agentpass":{"value":"..."}} with a
// plain value, byte for byte; ok is false for any other form.
func canonicalValidationRequest(data []byte) (value string, ok bool) {
	const prefix, suffix = `{"agentpass":{"value":"`, `"}}`
	if len(data) < len(prefix)+len(suffix) || string(data[:len(prefix)]) != prefix || string(data[len(data)-len(suffix):]) != suffix {
		return "", false
	}
	v := data[len(prefix) : len(data)-len(suffix)]
	for _, c := range v {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return "", false
		}
	}
	return string(v), true
}

// decodeSlow decodes data with a json.Decoder: the reference of the
// answers, and the path of every body that does not decode at once.
func decodeSlow(data []byte, doc Document) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(doc); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return err
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return invalid(te.Field, "has the wrong JSON type")
		}
		return &FieldError{Field: "body", Reason: "malformed JSON", Err: err}
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("body", "unexpected data after the JSON document")
	}
	return doc.Validate()
}

// unwrapEnvelope returns the inner object of {"request": {...}} or
// {"response": {...}}.
func unwrapEnvelope(data []byte) ([]byte, bool, error) {
	// Cheap pre-check: documents without these keys skip the map decode.
	if !bytes.Contains(data, []byte(`"request"`)) && !bytes.Contains(data, []byte(`"response"`)) {
		return nil, false, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, false, &FieldError{Field: "body", Reason: "malformed JSON", Err: err}
	}
	for _, k := range []string{"request", "response"} {
		inner, ok := m[k]
		if !ok {
			continue
		}
		if len(m) != 1 {
			return nil, false, invalid(k, "an envelope must be the only member of the body")
		}
		inner = bytes.TrimSpace(inner)
		if len(inner) == 0 || inner[0] != '{' {
			return nil, false, invalid(k, "must be a JSON object")
		}
		return inner, true, nil
	}
	return nil, false, nil
}
