package expiryset

import (
	"testing"

	"github.com/agentpass-go/agentpass/internal/fuzzopt"
)

// TestMain bounds fuzz input minimization, which Go's default would let
// stall the fuzz targets here on long seeds (see internal/fuzzopt).
func TestMain(m *testing.M) { fuzzopt.Main(m) }
