// Package foldmark tells this module's own stores and replay caches from
// values that wrap them.
//
// A PostgreSQL store saves a round trip by recording a replay pair in its
// own statement, which is right only when the store and the cache are
// exactly this module's types: a wrapper that embeds one (to override
// Seen with a namespace of its own, or ConsumePass with a policy check)
// would otherwise be recognised by its promoted methods and silently
// bypassed. A Mark records the value that owns it, so a wrapper, which
// carries the inner value's Mark, is not its own.
//
//	type Store struct {
//		mark // type mark = foldmark.Mark: embedded under an unexported name
//		...
//	}
//	s := &Store{}; s.mark.Set(s)
//	...
//	if foldmark.Own(v) { /* v is a Store itself, not a wrapper */ }
//	if foldmark.Wraps(v) { /* v embeds a marked value: use v's own methods */ }
package foldmark

// Mark is embedded by a store or cache that may fold a record into its own
// statements. It has no exported fields, and its one exported method only
// sets it.
type Mark struct{ self any }

// Set records v, the value that embeds m. Call it once, in the constructor.
func (m *Mark) Set(v any) { m.self = v }

func (m *Mark) foldSelf() any { return m.self }

type marked interface{ foldSelf() any }

// Own reports whether v carries a Mark set to v itself. A value that only
// embeds a marked one carries the inner value's Mark, which names the inner
// value, and so is not its own. Comparing values of different types never
// panics, and a wrapper is always of a type other than the value it wraps.
func Own(v any) bool {
	self, ok := selfOf(v)
	return ok && self == v
}

// Wraps reports whether v carries the Mark of another value: v embeds a
// marked value, whose promoted methods v may override. A value with no
// Mark at all (another module's own implementation) does not wrap one.
func Wraps(v any) bool {
	self, ok := selfOf(v)
	return ok && self != v
}

// selfOf returns the value v's Mark names, and whether v has a Mark. A
// Mark reached through a nil embedded pointer (a wrapper of nothing) is
// a Mark of no value: v is then not its own, and wraps (no fold for it).
func selfOf(v any) (self any, ok bool) {
	m, ok := v.(marked)
	if !ok || v == nil {
		return nil, false
	}
	defer func() {
		if recover() != nil {
			self = nil
		}
	}()
	return m.foldSelf(), true
}
