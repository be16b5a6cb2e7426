package authority

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/jcs"
)

// TestInputDigestIsJCSOfJSON checks that the hand-built digest document is
// exactly the canonical form of the input's JSON encoding, so another
// implementation hashing the JSON gets the same digest.
func TestInputDigestIsJCSOfJSON(t *testing.T) {
	inputs := []CompileInput{
		{},
		{Service: "https://a.example", Task: "Ünïcode <tag> & \"quotes\"\n\u2028 \\ \b\f\r\t\x00\x1f\x7f", Available: []AvailableScope{{Name: "a:read"}}},
		{Available: []AvailableScope{}, Requested: []string{}},
		{Service: "https://a.example", Task: "t", TaskClass: "bugfix", Requested: []string{"b", "a"}, Tier: dpop.TierAttested,
			Available: []AvailableScope{{Name: "z", Description: "d", Effect: EffectWrite}, {Name: "a", Effect: "odd"}}},
	}
	for i, in := range inputs {
		raw, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		canon, err := jcs.Canonicalize(raw)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(canon)
		got := inputDigest(&in)
		if want := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("input %d: digest %s, want %s of %s", i, got, want, canon)
		}
	}
}

func FuzzInputDigest(f *testing.F) {
	f.Add("Summarize tickets \"now\"\n", "tickets:read", "desc\u2028")
	f.Add("\x00\x1f\x7f\\", "", "")
	f.Fuzz(func(t *testing.T, task, name, desc string) {
		in := CompileInput{Task: task, Available: []AvailableScope{{Name: name, Description: desc}}, Requested: []string{desc}}
		if checkInput(&in) != nil {
			return
		}
		raw, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		canon, err := jcs.Canonicalize(raw)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(canon)
		if got, want := inputDigest(&in), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("digest %s, want %s of %s", got, want, canon)
		}
	})
}
