package secret

import (
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
