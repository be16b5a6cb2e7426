// Package jsonscan checks and walks JSON text on the hot paths, without
// reflection. [Valid] checks a document, accepting exactly what
// encoding/json.Valid accepts; the walkers (SkipSpace, StringEnd,
// ValueEnd) find members and values in text already known to be valid
// and never validate: on invalid input their results are meaningless,
// though they never read past the slice.
package jsonscan

// SkipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func SkipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// StringEnd returns the index after the closing quote of the JSON string
// whose opening quote is b[i].
func StringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// ValueEnd returns the index after the JSON value starting at b[i]; for a
// position where no value starts (a closing bracket, a comma) it returns
// i.
func ValueEnd(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = StringEnd(b, i) - 1
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // the end of the enclosing object or array
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}
