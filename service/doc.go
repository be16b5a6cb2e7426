// Package service lets an application accept AgentPasses: it serves the
// Service endpoints of the AgentPass protocol, redeems passes at their
// Authority, and authenticates agent requests with middleware.
package service
