//go:build !race

package jwtcheck

const raceEnabled = false
