package secret

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

func TestTokenShapeAndUniqueness(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		tok := Token("ap_")
		if !strings.HasPrefix(tok, "ap_") || len(tok) != 3+43 {
			t.Fatalf("token %q has the wrong shape", tok)
		}
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
	if len(ID("r_")) != 2+22 {
		t.Error("ID is not 128 bits")
	}
}

func TestHashAndEqual(t *testing.T) {
	if Hash("a") == Hash("b") || len(Hash("a")) != 64 {
		t.Error("Hash")
	}
	if !Equal("abc", "abc") || Equal("abc", "abd") || Equal("abc", "ab") {
		t.Error("Equal")
	}
}

func TestSumMatchesHash(t *testing.T) {
	for _, n := range []int{0, 1, 46, 64, 65, 512, 513, 4096} {
		s := strings.Repeat("x", n)
		sum := Sum(s)
		if got, want := Hash(s), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("len %d: Hash %s, Sum %s", n, got, want)
		}
		if want := sha256.Sum256([]byte(s)); sum != want {
			t.Errorf("len %d: Sum is not SHA-256", n)
		}
	}
	for _, tok := range []string{Token("ap_"), strings.Repeat("x", 512)} {
		if n := testing.AllocsPerRun(100, func() { _ = Sum(tok) }); n != 0 {
			t.Errorf("Sum of %d bytes allocates %v times", len(tok), n)
		}
	}
}

// TestNewShapeAndAllocs: a minted secret is its prefix and n random bytes
// in unpadded base64url, in one allocation for the sizes this module mints.
func TestNewShapeAndAllocs(t *testing.T) {
	for _, n := range []int{0, 1, IDBytes, TokenBytes, 33, 100} {
		s := New("apt_", n)
		raw, ok := strings.CutPrefix(s, "apt_")
		if !ok {
			t.Fatalf("n=%d: %q lacks its prefix", n, s)
		}
		b, err := base64.RawURLEncoding.DecodeString(raw)
		if err != nil || len(b) != n {
			t.Errorf("n=%d: %q decodes to %d bytes, %v", n, raw, len(b), err)
		}
	}
	if a, b := New("x", TokenBytes), New("x", TokenBytes); a == b {
		t.Error("two secrets are equal")
	}
	want := 1.0
	if raceEnabled {
		want = 2
	}
	for _, n := range []int{IDBytes, TokenBytes} {
		if got := testing.AllocsPerRun(100, func() { _ = New("apt_", n) }); got > want {
			t.Errorf("New(%d) allocates %v times, want %v", n, got, want)
		}
	}
}
