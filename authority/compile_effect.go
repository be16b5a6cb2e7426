package authority

import "strings"

// Effect is what granting a scope lets the holder do, used to decide how
// much human attention a grant needs. Effects are ordered: read < write <
// delete < external < admin. Any other value, EffectUnknown included, ranks
// as admin, so a scope nobody classified is gated as the most dangerous.
type Effect string

// The effects, lowest first.
const (
	EffectRead     Effect = "read"     // observes data
	EffectWrite    Effect = "write"    // creates or changes data
	EffectDelete   Effect = "delete"   // removes data
	EffectExternal Effect = "external" // acts outside the Service (sends mail, pays, publishes)
	EffectAdmin    Effect = "admin"    // changes who may do what
	EffectUnknown  Effect = "unknown"  // not classified; treated as admin
)

func (e Effect) rank() int {
	switch e {
	case EffectRead:
		return 1
	case EffectWrite:
		return 2
	case EffectDelete:
		return 3
	case EffectExternal:
		return 4
	default:
		return 5
	}
}

// Compare returns -1, 0 or +1 as e ranks below, equal to or above o.
// Unrecognised values rank as admin.
func (e Effect) Compare(o Effect) int {
	a, b := e.rank(), o.rank()
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// EffectRules maps scope-name suffixes (such as ":read" or ".delete") to
// effects: the Authority's own classification of the scopes Services offer.
// The longest matching suffix wins; the empty suffix matches every scope and
// so sets a default.
type EffectRules map[string]Effect

// Of returns the effect of the scope name: the higher of declared (the
// Service's own classification, empty when it gave none) and the rules.
// Taking the higher means a Service can raise but never lower the gate the
// Authority puts on its scopes. With neither, the effect is EffectUnknown.
func (r EffectRules) Of(name string, declared Effect) Effect {
	var ruled Effect
	best := -1
	for suffix, e := range r {
		if len(suffix) > best && strings.HasSuffix(name, suffix) {
			best, ruled = len(suffix), e
		}
	}
	switch {
	case declared == "" && ruled == "":
		return EffectUnknown
	case declared == "":
		return normalEffect(ruled)
	case ruled == "":
		return normalEffect(declared)
	case declared.Compare(ruled) >= 0:
		return normalEffect(declared)
	default:
		return normalEffect(ruled)
	}
}

// normalEffect maps values outside the known set to EffectUnknown, so an
// arbitrary string from a Service never shows up as an effect name.
func normalEffect(e Effect) Effect {
	switch e {
	case EffectRead, EffectWrite, EffectDelete, EffectExternal, EffectAdmin:
		return e
	}
	return EffectUnknown
}
