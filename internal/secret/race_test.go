//go:build race

package secret

// raceEnabled: the race detector's instrumentation moves some stack
// buffers to the heap, so the allocation bounds are looser under it.
const raceEnabled = true
