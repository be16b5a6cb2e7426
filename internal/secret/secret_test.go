package secret

import (
	"crypto/sha256"
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
