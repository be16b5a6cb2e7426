package jwtcheck

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// signES256 is Sign for the common case, ES256 with a kid header and no
// embedded key: it writes the header go-jose would write, byte for byte,
// and signs with the key directly, skipping go-jose's re-serialisation and
// cryptosigner's ASN.1 round trip (about a quarter of a signature's cost).
// ok is false when the case is not that one, and the caller then signs
// through go-jose.
func signES256(k crypto.Signer, kid, typ string, payload []byte) (tok string, ok bool, err error) {
	pub, isEC := k.Public().(*ecdsa.PublicKey)
	if !isEC || pub.Curve != elliptic.P256() || !plainHeaderValue(kid) || !plainHeaderValue(typ) {
		return "", false, nil
	}
	enc := base64.RawURLEncoding
	var hbuf [160]byte // on the stack for the kids and typs we use
	header := hbuf[:0]
	header = append(header, `{"alg":"ES256"`...)
	if kid != "" {
		header = append(header, `,"kid":"`...)
		header = append(header, kid...)
		header = append(header, '"')
	}
	header = append(header, `,"typ":"`...)
	header = append(header, typ...)
	header = append(header, `"}`...)
	hl, pl := enc.EncodedLen(len(header)), enc.EncodedLen(len(payload))
	out := make([]byte, hl+1+pl+1+enc.EncodedLen(64))
	enc.Encode(out, header)
	out[hl] = '.'
	enc.Encode(out[hl+1:], payload)
	digest := sha256.Sum256(out[:hl+1+pl])
	der, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return "", true, err
	}
	var sig [64]byte
	if !derToRaw(der, sig[:]) {
		return "", false, nil
	}
	out[hl+1+pl] = '.'
	enc.Encode(out[hl+1+pl+1:], sig[:])
	return string(out), true, nil
}

// plainHeaderValue reports whether v is written the same by every JSON
// encoder: printable ASCII without quote, backslash or the characters
// encoders escape for HTML.
func plainHeaderValue(v string) bool {
	if len(v) > 256 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// derToRaw writes the DER ECDSA-Sig-Value of a P-256 signature as the
// 64-byte r||s of JWS (RFC 7518 §3.4). Anything but the exact DER of two
// positive integers of at most 32 bytes is refused.
func derToRaw(der, raw []byte) bool {
	if len(der) < 8 || der[0] != 0x30 || int(der[1]) != len(der)-2 || der[1] >= 0x80 {
		return false
	}
	rest := der[2:]
	for i := 0; i < 2; i++ {
		if len(rest) < 2 || rest[0] != 0x02 || int(rest[1]) > len(rest)-2 || rest[1] == 0 {
			return false
		}
		n := rest[2 : 2+int(rest[1])]
		rest = rest[2+int(rest[1]):]
		if n[0]&0x80 != 0 || len(n) > 1 && n[0] == 0 && n[1]&0x80 == 0 {
			return false // negative or not minimal
		}
		for len(n) > 0 && n[0] == 0 {
			n = n[1:]
		}
		if len(n) > 32 {
			return false
		}
		copy(raw[i*32+32-len(n):(i+1)*32], n)
	}
	return len(rest) == 0
}
