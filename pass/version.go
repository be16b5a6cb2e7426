package pass

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is the AgentPass specification version this module implements and
// writes into the configuration documents it publishes.
const Version = "0.1"

// supportedMajor is the only major version this module accepts. Any minor
// version of it is accepted (forward compatibility, §2.2 of the spec).
const supportedMajor = 0

// VersionError reports a configuration document whose version is malformed or
// whose major version this module does not implement. It matches
// [ErrUnsupportedVersion] with errors.Is.
type VersionError struct {
	Version string // the version string as received
	Reason  string
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("pass: unsupported version %q: %s (this module implements %s)", e.Version, e.Reason, Version)
}

// Is reports whether target is ErrUnsupportedVersion.
func (e *VersionError) Is(target error) bool { return target == ErrUnsupportedVersion }

// parseVersion parses a "major.minor" version string.
func parseVersion(v string) (major, minor int, err error) {
	a, b, ok := strings.Cut(v, ".")
	if !ok || !allDigits(a) || !allDigits(b) {
		return 0, 0, &VersionError{Version: v, Reason: `not of the form "major.minor"`}
	}
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil {
		return 0, 0, &VersionError{Version: v, Reason: "number out of range"}
	}
	return major, minor, nil
}

// CheckVersion accepts any "0.x" version and rejects a malformed version or
// another major version.
func CheckVersion(v string) error {
	major, _, err := parseVersion(v)
	if err != nil {
		return err
	}
	if major != supportedMajor {
		return &VersionError{Version: v, Reason: fmt.Sprintf("major version %d is not implemented", major)}
	}
	return nil
}

func allDigits(s string) bool {
	if s == "" || len(s) > 9 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
