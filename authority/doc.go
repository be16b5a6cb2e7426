// Package authority provides the primitives to run an AgentPass Authority.
package authority
