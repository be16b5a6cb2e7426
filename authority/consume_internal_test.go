package authority

import (
	"testing"

	"github.com/agentpass-go/agentpass/pass"
)

// TestConsumedAncestors: the validation answer bounds a sub-agent by every
// ancestor; one a retried consumption could not find (pruned after it
// ended) counts as ended, so the answer grants nothing, and a chain deeper
// than the bound is refused.
func TestConsumedAncestors(t *testing.T) {
	root := &Request{MissionID: "msn_root", Scope: pass.Scope{"a", "b"}}
	parent := &Request{MissionID: "msn_parent", ParentMissionID: "msn_root", Scope: pass.Scope{"a"}}
	deep := make([]*Request, maxMissionDepth)
	for i := range deep {
		deep[i] = &Request{MissionID: "msn_x", ParentMissionID: "msn_y", Scope: pass.Scope{"a"}}
	}
	for _, tc := range []struct {
		name      string
		m         *Request
		anc       []*Request
		wantScope pass.Scope
		wantErr   bool
	}{
		{"root mission", &Request{MissionID: "msn_m"}, nil, pass.Scope{"a", "b"}, false},
		{"complete chain", &Request{MissionID: "msn_m", ParentMissionID: "msn_parent"}, []*Request{parent, root}, pass.Scope{"a"}, false},
		{"ancestor gone", &Request{MissionID: "msn_m", ParentMissionID: "msn_parent"}, []*Request{parent}, pass.Scope{}, false},
		{"parent gone", &Request{MissionID: "msn_m", ParentMissionID: "msn_parent"}, nil, pass.Scope{}, false},
		{"too deep", &Request{MissionID: "msn_m", ParentMissionID: "msn_x"}, deep, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			anc, err := consumedAncestors(tc.m, tc.anc)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			got := attenuate(pass.Scope{"a", "b"}, anc)
			if !got.SubsetOf(tc.wantScope) || !tc.wantScope.SubsetOf(got) {
				t.Errorf("attenuated scope %v, want %v", got, tc.wantScope)
			}
		})
	}
}
