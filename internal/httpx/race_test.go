//go:build race

package httpx

// raceEnabled: the race detector's runtime allocates, and sync.Pool drops
// some of what is put back, so the allocation bounds are looser under it.
const raceEnabled = true
