//go:build race

package jwtcheck

// raceEnabled: the race detector drops sync.Pool entries at random, so an
// allocation count may be one or two higher in a run.
const raceEnabled = true

// RaceEnabled is raceEnabled for the external test package.
const RaceEnabled = raceEnabled
