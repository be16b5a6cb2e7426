package harness

// ForgetUse marks g unused again, so that a test can present the same pass
// twice and see the Service refuse the replay; the Client itself never does.
func ForgetUse(g *Grant) { g.used.Store(false) }
