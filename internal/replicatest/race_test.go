//go:build race

package replicatest

// raceEnabled: the race detector slows every party about tenfold, so the
// concurrent tests use fewer passes (see singleUsePasses).
const raceEnabled = true
