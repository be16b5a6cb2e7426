//go:build unix

package replicatest

import (
	"syscall"
	"time"
)

// processCPU is the user and system CPU time this process has used so
// far (all parties: their crypto, TLS, HTTP and stores).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
