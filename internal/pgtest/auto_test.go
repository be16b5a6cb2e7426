package pgtest

import (
	"context"
	"strings"
	"testing"
)

// Without AGENTPASS_TEST_POSTGRES, DSN starts a throwaway cluster of the
// test binary's own on a Unix socket, when PostgreSQL is installed, and
// Pool gives a schema on it.
func TestDSNStartsCluster(t *testing.T) {
	if findBin("initdb") == "" || findBin("pg_ctl") == "" {
		t.Skip("PostgreSQL is not installed: nothing to start")
	}
	t.Setenv(EnvDSN, "")
	dsn := DSN(t)
	if !strings.Contains(dsn, "host=/") {
		t.Fatalf("DSN %q is not the throwaway cluster's Unix socket", dsn)
	}
	if again := DSN(t); again != dsn {
		t.Errorf("a second DSN started another cluster: %q, then %q", dsn, again)
	}
	var one int
	if err := Pool(t).QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
}
