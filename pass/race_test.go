//go:build race

package pass_test

// raceEnabled: the race detector's runtime allocates, and sync.Pool drops
// some of what is put back, so the allocation bounds are looser under it.
const raceEnabled = true
