package authority_test

import "testing"

// bind makes e's helpers fail t, a subtest, instead of the test that built
// e, until the returned function restores it: a helper must not call
// FailNow on a parent test. Subtests that bind must not run in parallel.
func (e *env) bind(t testing.TB) (restore func()) {
	prev := e.t
	e.t = t
	return func() { e.t = prev }
}
