//go:build !race

package jwtcheck

const raceEnabled = false

// RaceEnabled is raceEnabled for the external test package.
const RaceEnabled = raceEnabled
