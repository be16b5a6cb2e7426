//go:build !unix

package pgtest

// flockFile is a no-op where flock(2) does not exist: only the in-process
// lock orders tests there.
func flockFile(path string, exclusive bool) (func(), error) {
	return func() {}, nil
}
