package service_test

import (
	"testing"

	"github.com/agentpass-go/agentpass/internal/fuzzopt"
)

// TestMain bounds fuzz input minimization: the fuzz targets here run whole
// handlers, which Go's default minimization would stall.
func TestMain(m *testing.M) { fuzzopt.Main(m) }
