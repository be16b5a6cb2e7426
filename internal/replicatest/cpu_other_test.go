//go:build !unix

package replicatest

import "time"

// processCPU is 0 where the platform does not tell a process its CPU
// time the Unix way; BenchmarkThroughput then leaves out cpu-µs/op.
func processCPU() time.Duration { return 0 }
