package browser

import "testing"

func TestResolverRules(t *testing.T) {
	got, err := resolverRules(map[string]string{"todo.test": "127.0.0.1:4000", "idp.test:8443": "127.0.0.1:4001"})
	want := "MAP idp.test:8443 127.0.0.1:4001, MAP todo.test:443 127.0.0.1:4000, MAP * ~NOTFOUND"
	if err != nil || got != want {
		t.Fatalf("resolverRules = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []map[string]string{{"": "127.0.0.1:1"}, {"a,b": "127.0.0.1:1"}, {"a.test": "127.0.0.1"}, {"a.test": "1.2.3.4:5, MAP *"}} {
		if _, err := resolverRules(bad); err == nil {
			t.Errorf("resolverRules(%v) accepted", bad)
		}
	}
}
